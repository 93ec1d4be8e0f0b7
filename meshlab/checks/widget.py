"""CheckButton: a Check button and a Hint button for one exercise; plain text when headless.

``CheckButton("ingress-rules", lab)`` shows the buttons when displayed in JupyterLab.
``CheckButton("ingress-rules", lab).check()`` runs the check and prints the text result, so a
notebook runs the same under nbval or in a script. The target is what `check()` accepts: an
exercise id, a check function, or a zero-argument callable such as
``lambda: my_check(answer_yaml)`` to read a learner's variable when the button is pressed.
Widgets are built only when the object is displayed.
"""

from __future__ import annotations

import html
from typing import Any

from . import base


class CheckButton:
    """Check and Hint buttons for one exercise, with the result shown under them."""

    def __init__(self, target: Any, *args: Any, label: str = "Check", **kwargs: Any):
        self.target, self.args, self.kwargs, self.label = target, args, kwargs, label
        self.result: base.CheckResult | None = None
        self._widget = None

    def run(self) -> base.CheckResult:
        """Run and record the check; never raises on a learner's answer."""
        self.result = base.check(self.target, *self.args, **self.kwargs)
        return self.result

    def check(self) -> None:
        """Run the check and print the text result (no widgets needed)."""
        print(self.run())

    def hint(self) -> None:
        """Print the next hint."""
        level, hints = self._next_hint()
        print(f"Hint {level}/{len(hints)}: {hints[level - 1]}" if hints else "No hints for this exercise.")

    def _next_hint(self) -> tuple[int, list[str]]:
        if self.result is not None:
            return base.next_hint(self.result)
        if isinstance(self.target, str) or hasattr(self.target, "exercise"):
            return base.next_hint(self.target)
        return 0, []

    @property
    def widget(self):
        """The ipywidgets box (built on first use)."""
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def _build(self):
        import ipywidgets as widgets

        check_button = widgets.Button(description=self.label, button_style="primary", icon="check")
        hint_button = widgets.Button(description="Hint", icon="lightbulb-o")
        result_box, hint_box = widgets.HTML(), widgets.HTML()
        shown: list[str] = []

        def on_check(_button) -> None:
            check_button.disabled, check_button.description = True, "Checking…"
            try:
                result_box.value = self.run()._repr_html_()
            except Exception as exc:  # an author's mistake (unknown id): say so in the box
                result_box.value = f"<pre>{html.escape(base.one_line(exc))}</pre>"
            finally:
                check_button.disabled, check_button.description = False, self.label

        def on_hint(_button) -> None:
            try:
                level, hints = self._next_hint()
            except LookupError as exc:
                level, hints = 0, [base.one_line(exc)]
            if not hints:
                hint_box.value = "<i>Press Check first; hints follow.</i>"
                return
            shown[:] = hints[:max(level, 1)]
            hint_box.value = "".join(f"<div><b>Hint {i}/{len(hints)}:</b> {html.escape(h)}</div>"
                                     for i, h in enumerate(shown, 1))

        check_button.on_click(on_check)
        hint_button.on_click(on_hint)
        return widgets.VBox([widgets.HBox([check_button, hint_button]), result_box, hint_box])

    def _repr_mimebundle_(self, **kwargs):
        data = self.widget._repr_mimebundle_(**kwargs)
        data["text/plain"] = repr(self)
        return data

    def __repr__(self) -> str:
        name = self.target if isinstance(self.target, str) else getattr(self.target, "__name__", "check")
        return f"CheckButton({name}): press Check, or call .check() to print the result"
