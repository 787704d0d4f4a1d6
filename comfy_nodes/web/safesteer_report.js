// Shows the text returned by the SafeSteer Report node inside the node (read-only multiline widget).
import { app } from "../../scripts/app.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

// The node grows with the report up to this height (then the text scrolls); the example workflow leaves this
// much free space under the node, so the report never covers another node.
const MAX_HEIGHT = 640;
const LINE_HEIGHT = 15;

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
      const wanted = Math.min(MAX_HEIGHT, 60 + LINE_HEIGHT * text.split("\n").length);
      this.setSize?.([Math.max(this.size[0], minWidth, 420), Math.max(this.size[1], minHeight, wanted)]);
      app.graph?.setDirtyCanvas(true, true);
    };
  },
});
