"""The follow-up charts: what each one plots (the drawing itself is tested in test_charts.py)."""

from __future__ import annotations

from decimal import Decimal

from smart_app.rules.followup import follow_up
from smart_app.web.followup_charts import follow_up_charts
from tests.builders import POLICY, PT, changed, day, lab, normal_labs, patient, plan


def test_the_coagulation_chart_plots_pt_wherever_inr_is() -> None:
    facts = patient(changed(normal_labs(), lab(PT, "16.0", 14)))  # ULN 14.5 s
    found = follow_up(facts, plan(), on=day(14), policy=POLICY)
    (chart,) = [
        c for c in follow_up_charts(found, facts, policy=POLICY) if c.key == "bilirubin-inr"
    ]
    assert [s.name for s in chart.series] == ["total bilirubin", "PT", "INR"]
    (pt,) = [s for s in chart.series if s.name == "PT"]
    assert [(p.day, p.value) for p in pt.points][-1] == (14, Decimal("1.10"))
    assert "PT" in chart.title
