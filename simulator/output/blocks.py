"""Report building blocks: the plain data the report template renders, and the page itself.

A block is a dict (``{"kind": "p", "text": ...}``, a table, a figure, a details fold); this module builds
blocks and tables (summary rows from the metric registry, policy and clinical parameters with their sources,
the reproducibility block), renders the page through the jinja2 template ``templates/report.html.j2`` with
autoescaping on (so a name such as ``<script>`` is shown as text), and writes it atomically. It never
builds HTML strings and draws no figure (:mod:`simulator.output.figures`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

NOT_FOR_CLINICAL_USE = ("Not for clinical use. painpath is for health-policy analysis and teaching. It is not a "
                        "clinical decision tool and must not be used to treat a patient.")


Block = dict[str, Any]


def img(b64: str, alt: str) -> Block:
    return {"kind": "img", "b64": b64, "alt": alt}


def para(text: str) -> Block:
    return {"kind": "p", "text": text}


def h3(text: str) -> Block:
    return {"kind": "h3", "text": text}


def pre(text: str) -> Block:
    return {"kind": "pre", "text": text}


def details(summary: str, blocks: list[Block]) -> Block:
    return {"kind": "details", "summary": summary, "blocks": blocks}


def scenario_card(name: str, description: str, rationale: str, note: str = "") -> Block:
    return {"kind": "scenario", "name": name, "description": description, "rationale": rationale, "note": note}


def bold(text: str) -> dict[str, str]:
    """A table cell shown in bold."""
    return {"bold": text}


def fmt_value(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    if isinstance(v, float):  # fixed notation, never scientific (1.2e-05 -> 0.000012)
        return np.format_float_positional(v, precision=digits, unique=False, fractional=False, trim="-") \
            if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> Block:
    """A table block; cells are text (numbers formatted by fmt_value) or bold(text)."""
    return {"kind": "table", "cls": cls, "header": [str(h) for h in header],
            "rows": [[c if isinstance(c, dict | str) else fmt_value(c) for c in r] for r in rows]}


def summary_rows(summary: dict[str, Any]) -> list[list[Any]]:
    """Rows (label with unit, value [95% CI], note) of every metric (the metric registry's labels)."""
    from ..analysis.metrics import summary_rows as rows

    return [[lab, text, note] for _k, lab, text, note in rows(summary)]


def _flatten_policy(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(d, dict):
        for k, v in d.items():
            out.extend(_flatten_policy(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}"))
            if isinstance(v, dict) and not v:
                out.append((f"{prefix}{k}", "{}"))
    else:
        out.append((prefix, d))
    return out


def policy_rows(resolved: dict[str, Any]) -> list[list[Any]]:
    """Policy, capacity and override settings with the rule each parameterises and whether it departs from
    the guideline default."""
    from ..model.policy import Policy

    default = dict(_flatten_policy(Policy().model_dump(mode="json"), "policy."))
    rows = []
    for k, v in _flatten_policy({kk: resolved.get(kk) for kk in ("policy", "specialist", "clinical_overrides",
                                                                 "horizon_days") if kk in resolved}):
        rule = _field_rule(k)
        changed = k in default and default[k] != v
        rows.append([k, json.dumps(v), rule,
                     bold("changed") if changed or (k.startswith("clinical_overrides") and v != "{}") else ""])
    return rows


def _field_rule(path: str) -> str:
    from ..model.policy import Policy

    parts = path.split(".")
    if parts[0] != "policy" or len(parts) < 2:
        return {"specialist": "P9 (capacity)", "clinical_overrides": "sensitivity override (simulator/model/overrides.py)",
                "horizon_days": ""}.get(parts[0], "")
    model: Any = Policy
    desc = ""
    for p in parts[1:]:
        f = getattr(model, "model_fields", {}).get(p)
        if f is None:
            break
        desc = f.description or desc
        model = f.annotation
    return desc or ""


def clinical_rows(overrides: dict[str, float] | None = None) -> list[list[Any]]:
    """Every clinical parameter (as run, with overrides applied) with unit, evidence tag and source."""
    from ..model.overrides import apply_overrides

    model = apply_overrides(overrides or {})
    rows: list[list[Any]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict) and "source" in node and "value" in node:
            v = node["value"]
            if isinstance(v, list):
                val = "; ".join(f"{d:g}: {p:.3g}" for d, p in v)
            elif isinstance(v, dict):
                val = ", ".join(f"{e}: {p:.3g}" for e, p in v.items()) + f"; default {node.get('default', 0):.3g}"
            else:
                val = f"{v:.4g}"
            rows.append([path, val, node.get("unit", ""), node.get("tag", ""), node.get("source", "")])
            return
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}".strip("."))

    walk(model.model_dump(mode="python"), "")
    return rows


def reproducibility_block(manifests: Sequence[dict[str, Any]], extra: dict[str, Any] | None = None) -> list[Block]:
    keys = ("scenario", "painpath_version", "scenario_hash", "policy_hash", "cohort_hash", "model_hash", "seed",
            "patients", "replications", "horizon_days", "python", "platform")
    rows = [[str(m.get("scenario", "")), *[fmt_value(m.get(k)) for k in keys[1:]]] for m in manifests]
    out = [table(keys, rows)]
    libs = manifests[0].get("libraries", {}) if manifests else {}
    out.append(para("Libraries: " + ", ".join(f"{k} {v}" for k, v in libs.items())))
    cmds = {m.get("command", "") for m in manifests if m.get("command")}
    if extra and extra.get("command"):
        cmds = {extra["command"]}
    for c in sorted(cmds):
        out += [para("Command:"), pre(c)]
    if extra:
        out.append(pre(json.dumps({k: v for k, v in extra.items() if k != "command"}, indent=1)))
    return out


@lru_cache(maxsize=1)
def _template() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("simulator", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    return env.get_template("report.html.j2")


def page(title: str, sections: Sequence[tuple[str, str, list[Block]]]) -> str:
    """The HTML document: ``sections`` are (id, heading, blocks); the statement comes first and last."""
    return _template().render(title=title, statement=NOT_FOR_CLINICAL_USE,
                              sections=[{"id": sid, "heading": h, "blocks": blocks} for sid, h, blocks in sections])


def write_html(text: str, path: str | Path) -> Path:
    """Write ``text`` to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
