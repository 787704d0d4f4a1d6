"""Human-readable views of a pack: the `safesteer inspect` text report and its optional PNG."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .direction_pack import DirectionPack


def cosine_matrix(pack: DirectionPack, space: str) -> torch.Tensor:
    """``[K, K]`` cosine similarities between the pack's directions in ``space`` (order: ``pack.names``)."""
    vectors = torch.stack([pack.direction(space, name) for name in pack.names])
    units = vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return units @ units.T


def inspect_text(pack: DirectionPack) -> str:
    """Metadata summary, vector norms, cosine matrix per space, fit statistics and provenance."""
    metadata = pack.metadata
    lines = [repr(pack), ""]
    target = metadata.get("target", {})
    source = metadata.get("source", {})
    lines.append(f"kind: {metadata['kind']}    library: {metadata['library_version']}")
    lines.append(f"target: {target.get('model_id')} ({target.get('family')}, {target.get('pipeline_class')})")
    lines.append(
        f"source: {source.get('model_id')} revision={source.get('revision')} layer={source.get('layer')} "
        f"pooling={source.get('pooling')}"
    )
    if source.get("auroc"):
        lines.append(
            "held-out AUROC (source): " + ", ".join(f"{k}={v:.3f}" for k, v in source["auroc"].items())
        )
    if pack.has_source_gate:
        gate = metadata["source_gate"]
        reads = "as chat turns" if gate["chat_template"] else "as written"
        rates = ", ".join(f"{float(rate):g}" for rate in sorted(map(float, gate.get("fpr_thresholds", {}))))
        lines.append(
            f"source-model gate: layer={gate['layer']} pooling={gate['pooling']}, reads prompts {reads}; "
            f"thresholds for gate_fpr {rates or 'the default only'} (use gate_model=)"
        )
        lines.extend(supplied_gate_lines(gate, "  "))
    width = max(len(name) for name in pack.names)
    for space, dim in pack.spaces.items():
        lines.append("")
        lines.append(f"space {space} (dim {dim})")
        alignment = (metadata.get("alignment") or {}).get(space)
        if alignment:
            lines.append(
                f"  alignment: {alignment.get('method')} held-out R^2={alignment.get('heldout_r2')} "
                f"cosine={alignment.get('heldout_cosine')} anchors={alignment.get('n_anchors')}"
                + (f" ({alignment['anchors']})" if alignment.get("anchors") else "")
            )
        for name in pack.names:
            threshold = pack.threshold(name, space)
            gate = f" gate>{threshold:.4g}" if threshold is not None else ""
            lines.append(f"  {name:<{width}} norm={float(pack.direction(space, name).norm()):.4g}{gate}")
        matrix = cosine_matrix(pack, space)
        short = [name[:6] for name in pack.names]
        lines.append("  cosine " + " ".join(f"{s:>6}" for s in short))
        for name, row in zip(short, matrix.tolist(), strict=True):
            lines.append(f"  {name:>6} " + " ".join(f"{value:>6.2f}" for value in row))
    lines.append("")
    lines.append("provenance: " + json.dumps(metadata.get("provenance", {}), sort_keys=True))
    return "\n".join(lines)


def inspect_plot(pack: DirectionPack, path: str | Path) -> Path:
    """PNG: the source layer-separability curve (if recorded) and the category cosine matrix per space.

    Needs matplotlib (``pip install matplotlib``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError("--plot needs matplotlib: pip install matplotlib") from error
    layer_auroc = pack.metadata.get("source", {}).get("layer_auroc") or {}
    spaces = list(pack.spaces)
    panels = len(spaces) + (1 if layer_auroc else 0)
    figure, axes = plt.subplots(1, panels, figsize=(4.8 * panels, 4.2), squeeze=False)
    axes = list(axes[0])
    if layer_auroc:
        axis = axes.pop(0)
        layers = sorted(int(k) for k in layer_auroc)
        axis.plot(layers, [layer_auroc[str(k)] for k in layers], marker="o")
        chosen = pack.metadata["source"].get("layer")
        if chosen is not None:
            axis.axvline(chosen, color="tab:red", linestyle="--", label=f"chosen layer {chosen}")
            axis.legend()
        axis.set(title="source layer separability", xlabel="layer", ylabel="held-out AUROC")
    for axis, space in zip(axes, spaces, strict=True):
        image = axis.imshow(cosine_matrix(pack, space).numpy(), vmin=-1, vmax=1, cmap="coolwarm")
        axis.set_xticks(range(len(pack.names)), pack.names, rotation=60, ha="right", fontsize=8)
        axis.set_yticks(range(len(pack.names)), pack.names, fontsize=8)
        axis.set_title(f"direction cosines: {space}")
        figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def supplied_gate_lines(gate: dict, indent: str) -> list[str]:
    """What a source gate's second heads were fitted on (``--source-gate-prompts``), when it has them."""
    supplied = gate.get("supplied_prompts")
    if not supplied:
        return []
    return [
        f"{indent}source gate heads: {len(gate.get('heads', []))} per direction for "
        f"{', '.join(supplied.get('directions', []))}; the second fitted on {supplied.get('count')} supplied unsafe "
        f"prompts ({supplied.get('name')}, sha256 {str(supplied.get('sha256'))[:12]}...; text not stored)",
        f"{indent}  caution: benign prompts in the supplied prompts' style may pass less well than the anchors "
        "say (on I2P: 10% of hand-written text-to-image prompts fired, 20% without supplied benign prompts; "
        "docs/method.md 6.5.3)",
    ]
