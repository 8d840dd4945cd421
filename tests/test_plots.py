"""apps.plots: the report and benchmark figures."""

import pytest

matplotlib = pytest.importorskip("matplotlib")


def test_metric_against_speedup_keeps_the_colours_it_is_given(tmp_path, monkeypatch):
    from apps import plots

    drawn = {}
    save = plots._save

    def keep_colours(plt, figure, path):
        drawn.update({line.get_label(): matplotlib.colors.to_hex(line.get_color())
                      for line in figure.axes[0].get_lines()})
        return save(plt, figure, path)

    monkeypatch.setattr(plots, "_save", keep_colours)
    points = [{"speedup": 1.0, "metric": 0.9, "label": "dense", "method": "dense"},
              {"speedup": 1.5, "metric": 0.89, "label": "1.5", "method": "fisher"},
              {"speedup": 2.0, "metric": 0.87, "label": "2", "method": "lagrangian"}]
    path = plots.metric_against_speedup(points, tmp_path / "plot.png", "accuracy",
                                        colors={"fisher": "C3"})
    assert (tmp_path / "plot.png").read_bytes().startswith(b"\x89PNG") and path
    # fisher drawn second would take the cycle's C1; the map gives it C3, the others cycle.
    assert drawn["fisher"] == matplotlib.colors.to_hex("C3")
    assert drawn["dense"] == matplotlib.colors.to_hex("C0")
    assert drawn["lagrangian"] != drawn["fisher"]


def test_metric_against_speedup_draws_a_marked_method_without_a_line(tmp_path, monkeypatch):
    from apps import plots

    drawn = {}
    save = plots._save

    def keep_styles(plt, figure, path):
        drawn.update({line.get_label(): (line.get_marker(), line.get_linestyle())
                      for line in figure.axes[0].get_lines()})
        return save(plt, figure, path)

    monkeypatch.setattr(plots, "_save", keep_styles)
    points = [{"speedup": 1.0, "metric": 0.9, "label": "dense", "method": "dense"},
              {"speedup": 2.0, "metric": 0.89, "label": "2", "method": "lagrangian"},
              {"speedup": 3.0, "metric": 0.87, "label": "3", "method": "lagrangian"},
              {"speedup": 2.1, "metric": 0.86, "label": "", "method": "minilm-l3"}]
    plots.metric_against_speedup(points, tmp_path / "plot.png", "accuracy",
                                 markers={"minilm-l3": "s"})
    assert drawn["minilm-l3"] == ("s", "None")
    assert drawn["lagrangian"] == ("o", "-")
