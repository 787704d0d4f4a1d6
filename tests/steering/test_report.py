"""The report's text: one vocabulary (steered / not steered (below threshold) / gate off: steered
unconditionally / not requested), configured and applied strengths side by side, thresholds in words."""

from __future__ import annotations

from safesteer_diffusers.steering.report import OUTCOMES, DirectionDecision, PromptReport, SteeringReport


def decision(name, strength, configured, fired, score, threshold):
    return DirectionDecision(
        name=name,
        strength=strength,
        fired=fired,
        scores={"text_encoder": score},
        thresholds={"text_encoder": threshold},
        configured=configured,
    )


def test_gate_on_report_says_what_was_steered_and_why():
    report = SteeringReport(family="sd", mode="add", injection="conditioning", gate=True, enabled=True)
    report.prompts = [
        PromptReport(
            row=0,
            prompt="a knife fight",
            directions=[
                decision("global", 3.0, 3.0, True, 0.394, 0.120),
                decision("violence", 0.0, 2.0, False, -1.932, 3.257),
            ],
            applied={"text_encoder": 2.5},
        ),
        PromptReport(row=1, prompt="a picnic", directions=[decision("global", 0.0, 3.0, False, -1.5, 0.12)]),
    ]
    lines = str(report).splitlines()
    assert lines[0] == "SafeSteer report: sd, mode add, conditioning steering, gate on, steering enabled"
    assert lines[1] == "  row 0 'a knife fight': steered by global (offset norm per token: text_encoder 2.5)"
    assert lines[2].split() == [
        "global",
        "steered",
        "strength",
        "applied",
        "3",
        "(configured",
        "3);",
        "text_encoder",
        "score",
        "+0.394,",
        "above",
        "threshold",
        "+0.120",
    ]
    assert "not steered (below threshold)" in lines[3] and "strength applied 0 (configured 2)" in lines[3]
    assert "score -1.932, not above threshold +3.257" in lines[3]
    assert lines[4] == "  row 1 'a picnic': not steered (below threshold)"
    assert ">" not in str(report) and "pass" not in str(report) and "fired=" not in str(report)


def test_gate_off_and_strength_zero_wording():
    report = SteeringReport(family="flux", mode="add", injection="conditioning", gate=False, enabled=True)
    report.prompts = [
        PromptReport(
            row=0,
            prompt=None,
            directions=[
                decision("global", 1.0, 1.0, True, 0.1, None),
                decision("sexual", 0.0, 0.0, True, 0.2, None),
            ],
            applied={"text_encoder_2": 1.0},
        )
    ]
    text = str(report)
    assert "(prompt_embeds): steered by global" in text
    assert OUTCOMES["ungated"] in text and OUTCOMES["off"] in text
    assert "text_encoder score +0.100 (no threshold in the pack)" in text
    assert report.to_dict()["prompts"][0]["steered"] is True
