// Shows the text returned by the SafeSteer Report node inside the node (read-only multiline widget).
import { app } from "../../scripts/app.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

app.registerExtension({
  name: "safesteer.report",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== "SafeSteerReport") {
      return;
    }
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = (message?.text ?? []).join("\n");
      let widget = this.widgets?.find((w) => w.name === "safesteer_report");
      if (!widget) {
        widget = ComfyWidgets["STRING"](this, "safesteer_report", ["STRING", { multiline: true }], app).widget;
        widget.inputEl.readOnly = true;
        widget.inputEl.style.opacity = 0.85;
      }
      widget.value = text;
      const [minWidth, minHeight] = this.computeSize();
      this.setSize?.([Math.max(this.size[0], minWidth, 420), Math.max(this.size[1], minHeight, 240)]);
      app.graph?.setDirtyCanvas(true, true);
    };
  },
});
