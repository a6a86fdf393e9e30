"""Slider explorers: ipywidgets sliders wired to a plain drawing function.

The drawing function lives in ``vae_lib`` and is unit-tested like any other; a widget only wires
sliders to it with ``interactive_output`` and shows the result in an ``Output`` of fixed height (so
the page does not jump while a slider moves). A headless run (nbval) calls the drawing function
once, with the sliders' initial values. Introduced in notebook 01.
"""
from __future__ import annotations

from typing import Callable

import matplotlib.pyplot as plt


def slider_explorer(draw: Callable[..., object], sliders: dict, height: str = "420px", title: str | None = None):
    """Build a widget that redraws ``draw(**values)`` whenever one of ``sliders`` moves.

    ``sliders`` maps each keyword argument of ``draw`` to an ipywidgets slider (or any value
    widget). ``draw`` should draw one matplotlib figure; it is shown with ``plt.show()`` inside a
    fixed-height ``Output``. Returns the ``VBox`` to display; its ``.output`` attribute is the
    ``Output`` and ``.controls`` the slider box. Introduced in notebook 01.
    """
    import ipywidgets as widgets

    if not callable(draw):
        raise ValueError("draw must be a function that draws one figure")
    if not sliders or not isinstance(sliders, dict):
        raise ValueError("sliders must be a non-empty dict of keyword name -> ipywidgets slider")
    for name, w in sliders.items():
        if not isinstance(w, widgets.ValueWidget):
            raise ValueError(f"sliders[{name!r}] must be an ipywidgets value widget, got {type(w).__name__}")

    def redraw(**values):
        draw(**values)
        plt.show()

    output = widgets.interactive_output(redraw, sliders)
    output.layout = widgets.Layout(height=height, overflow="hidden")
    controls = widgets.HBox(list(sliders.values()), layout=widgets.Layout(flex_flow="row wrap"))
    children = ([widgets.HTML(f"<b>{title}</b>")] if title else []) + [controls, output]
    box = widgets.VBox(children)
    box.output, box.controls = output, controls
    return box
