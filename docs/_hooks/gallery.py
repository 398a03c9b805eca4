"""The recipe gallery: one page per shipped recipe, generated from ``recipes/*.yaml`` at build time.

Each page shows the recipe's paper and description, its file, its resolved defaults, graph rules and rules, and what
it does to a reference network (``zoo:resnet8`` at 32 x 32; for diffusion recipes, those with a ``timestep`` section,
``zoo:bidiffsr-unet-tiny`` at 16 x 16): the graph rewrites, the plan (which rule decides each layer, on the network
as the graph rules left it) and the cost before and after, in the paper convention of :mod:`binarize.cost`.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import torch
import yaml

import binarize
from binarize.cost import measure_cost
from binarize.engine.graph_factories import GRAPH_FACTORIES
from binarize.recipe import available_recipes, dump_recipe, load_recipe
from binarize.zoo import ZOO

REFERENCE = "resnet8"
DIFFUSION_REFERENCE = "bidiffsr-unet-tiny"
GALLERY_DIR = "recipes"
#: The opening fence of the recipe files shown on the pages: YAML whose long lines wrap (``.wrap-lines``).
YAML_FENCE = "```{.yaml .wrap-lines}"


def _flow(value: Any) -> str:
    """A value as one line of YAML flow style (``null``, ``true``, ``{name: x, gradient: true}``)."""
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1000).strip().removesuffix("...").strip()


def _cell(value: Any) -> str:
    """A value for a Markdown table cell, as inline code."""
    return f"`{_flow(value)}`"


def _spec(value: Any) -> str:
    """A binarizer or scale spec, short: ``ste``, ``heaviside (threshold=0.5, clip=0.5)``, ``-`` (the space lets a
    table cell wrap before the arguments)."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        args = ", ".join(f"{k}={_flow(v)}" for k, v in value.items() if k != "name")
        return f"{value['name']} ({args})"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _short_paper(paper: str | None) -> str:
    """``"Liu, Shen, Savvides and Cheng, ReActNet: ..., ECCV 2020"`` -> ``"Liu et al., ECCV 2020"``."""
    if not paper:
        return "(none)"
    parts = [p.strip() for p in paper.split(",")]
    first = parts[0]
    authors = first if " and " in first and len(first.split()) == 3 else f"{first.split()[0]} et al."
    venue = parts[-1]
    if venue.isdigit() and len(parts) > 2:
        venue = f"{parts[-2]}, {venue}"
    return f"{authors}, {venue}"


class Reference:
    """A reference network and its inputs, with its full-precision cost measured once."""

    def __init__(self, name: str) -> None:
        self.name = name
        entry = ZOO.get(name)
        self.label = entry.description
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.model = entry.build()
        self.inputs = entry.inputs()
        self.size = int(self.inputs[0].shape[-1])
        self.fp = measure_cost(self.model, self.inputs)

    def apply(self, name: str) -> tuple[binarize.Plan, binarize.CostReport, binarize.Report]:
        # The layer rules see the network as the graph rules left it, so a recipe with graph rules is planned on
        # its structure-only rewrite (binarize.plan itself plans the model as given).
        planned = self.model
        if load_recipe(name).graph_rules:
            planned = binarize.binarize(self.model, name, structure_only=True)
        plan = binarize.plan(planned, name, example_inputs=self.inputs)
        model = binarize.binarize(self.model, name, example_inputs=self.inputs)
        return plan, measure_cost(model, self.inputs), model.binarize_report


def graph_rules_table(rules: Any) -> str:
    """The graph rules of a recipe: pattern, factory, whether it preserves the function, optional (and args, within)."""
    header = ["#", "pattern", "replace", "function-preserving", "optional"]
    with_args = any(rule.args for rule in rules)
    with_within = any(rule.within is not None for rule in rules)
    header += ["args"] * with_args + ["within"] * with_within + ["from"]
    rows = []
    for i, rule in enumerate(rules):
        data = rule.to_dict()
        preserving = "yes" if GRAPH_FACTORIES.get(rule.replace).function_preserving else "no"
        row = [str(i), _cell(data["pattern"]), f"`{rule.replace}`", preserving, "yes" if rule.optional else "no"]
        row += [_cell(dict(rule.args)) if rule.args else "-"] * with_args
        row += [f"`{rule.within}`" if rule.within is not None else "-"] * with_within
        row.append(f"{rule.file.rsplit('/', 1)[-1]}:{rule.line}" if rule.file and rule.line else "")
        rows.append(row)
    return _table(header, rows)


class References:
    """The reference networks, built on first use: ``zoo:resnet8``, and a diffusion UNet for timestep recipes."""

    def __init__(self) -> None:
        self._built: dict[str, Reference] = {}

    def get(self, name: str) -> Reference:
        if name not in self._built:
            self._built[name] = Reference(name)
        return self._built[name]

    def for_recipe(self, recipe: Any) -> Reference:
        return self.get(DIFFUSION_REFERENCE if recipe.timestep is not None else REFERENCE)


def recipe_page(name: str, refs: References) -> tuple[str, dict[str, Any]]:
    """The Markdown page of recipe ``name`` and a summary row for the index."""
    recipe = load_recipe(name)
    ref = refs.for_recipe(recipe)
    source = (resources.files("binarize._recipes") / f"{name}.yaml").read_text(encoding="utf-8")
    plan, cost, report = ref.apply(name)
    out = [f"# `{name}`", ""]
    out += [f"**Paper:** {recipe.paper}" if recipe.paper else "**Paper:** none (a test recipe)", ""]
    if recipe.extends:
        chain = " → ".join(f"[`{p}`]({p}.md)" for p in recipe.extends)
        out += [f"**Extends:** {chain} (defaults merged key by key, the parent's rules come first)", ""]
    out += [recipe.description or "", ""]
    out += [f'Use it with `binarize(model, "{name}")` or `binarize summary MODEL --recipe {name}`.', ""]

    out += ["## Defaults", "", "The layer options every binarized layer starts from (after `extends`):", ""]
    out += [_table(["option", "value"], [[f"`{k}`", _cell(v)] for k, v in recipe.defaults.items()]), ""]

    if recipe.graph_rules:
        out += ["## Graph rules", "", "Applied before the rules below: each pattern of calls is replaced by the module "
                "its factory builds, and the layer rules then binarize that module like any other layer (see "
                "[Graph rules](../concepts/graph-rules.md)).", ""]
        out += [graph_rules_table(recipe.graph_rules), ""]

    out += ["## Rules", "", "In order; the level decides which rule wins on a layer (see "
            "[Recipes](../concepts/recipes.md#precedence)).", ""]
    rows = []
    for i, rule in enumerate(recipe.rules):
        where = f"{rule.file.rsplit('/', 1)[-1]}:{rule.line}" if rule.file and rule.line else ""
        action = f"binarize {_cell(rule.options)}" if rule.action == "binarize" else f"{rule.action}: {rule.value}"
        rows.append([str(i), f"`{rule.select.describe()}`", action, str(rule.level), where])
    out += [_table(["#", "select", "action", "level", "from"], rows), ""]

    # The files hold prose (descriptions, paper titles) on long lines: these blocks wrap them (extra.css).
    out += ["## The file", "", f"`recipes/{name}.yaml`, as shipped:", "", YAML_FENCE, source.rstrip(), "```", ""]
    out += ["Fully resolved (what `binarize.dump_recipe(binarize.load_recipe(...))` prints):", ""]
    out += [YAML_FENCE, dump_recipe(recipe).rstrip(), "```", ""]

    fp = ref.fp
    out += [f"## On `zoo:{ref.name}`", ""]
    out += [f"`zoo:{ref.name}`: {ref.label}.", ""]
    if report.graph_replaced:
        out += [f"The graph rules rewrote {len(report.graph_replaced)} call chain(s) of the reference network "
                f"({ref.size} x {ref.size} input; computed when this page was built):", ""]
        graph_rows = [
            [f"`{r['name']}`", r["old_types"], r["new_type"], "yes" if r["function_preserving"] else "no"]
            for r in report.graph_replaced
        ]
        out += [_table(["at", "matched", "replaced by", "function-preserving"], graph_rows), ""]
        out += ["The plan of the layer rules on the rewritten network:", ""]
    else:
        out += [f"The plan on the reference network ({ref.size} x {ref.size} input; computed when this page was "
                "built):", ""]
    plan_rows = [
        [f"`{d.candidate.name}`", d.candidate.cls.__name__, d.action or "-", d.rule or "no rule selects it"]
        for d in plan.decisions
    ]
    out += [_table(["layer", "type", "action", "decided by"], plan_rows), ""]
    out += ["Cost of one forward pass (params = FP + binary / 32, ops = FP MACs + binary MACs / 64 + norm ops; "
            "see [Cost model](../concepts/cost.md)):", ""]
    cost_rows = [
        ["params (M)", f"{fp.params_m:.4f}", f"{cost.params_m:.4f}", f"x{fp.params_m / cost.params_m:.2f}"],
        ["ops (G)", f"{fp.ops_g:.5f}", f"{cost.ops_g:.5f}", f"x{fp.ops_g / cost.ops_g:.2f}"],
        ["binary layers", "0", str(cost.binary_layers), ""],
        ["binary-weight layers", "0", str(cost.binary_weight_layers), ""],
    ]
    out += [_table(["", "full precision", f"`{name}`", "reduction"], cost_rows), ""]
    if report.skipped:
        out += ["Layers left in full precision:", ""]
        out += [f"- `{s['name']}` ({s['type']}): {s['reason']}" for s in report.skipped]
        out.append("")
    d = recipe.defaults
    extras = [label for key, label in (("input_shift", "RSign"), ("activation", None), ("shortcut", "shortcuts"))
              if d.get(key)]
    extras = [d["activation"] if label is None else label for label in extras]
    if recipe.graph_rules:
        extras.append(f"graph rules ({', '.join(dict.fromkeys(rule.replace for rule in recipe.graph_rules))})")
    summary = {
        "name": name,
        "reference": f"`zoo:{ref.name}`",
        "paper": _short_paper(recipe.paper),
        "weights": _spec(d.get("weight_binarizer")),
        "inputs": _spec(d.get("input_binarizer")),
        "scale": _spec(d.get("scale")),
        "extras": ", ".join(extras) or "-",
        "params": f"{cost.params_m:.4f}",
        "ops": f"{cost.ops_g:.5f}",
        "replaced": len(report.replaced),
    }
    return "\n".join(out), summary


def index_page(rows: list[dict[str, Any]], refs: References) -> str:
    """The gallery's index: one row per recipe."""
    out = ["---", "hide: [toc]", "---", "", "# Recipe gallery", ""]
    out += [
        "Every recipe shipped with binarize, generated from `recipes/*.yaml` when this site was built. "
        "Each page shows the paper, the description, the defaults and rules, and the recipe's plan and cost on a "
        f"reference network: `zoo:{REFERENCE}` ({refs.get(REFERENCE).size} x {refs.get(REFERENCE).size} input), "
        f"or `zoo:{DIFFUSION_REFERENCE}` ({refs.get(DIFFUSION_REFERENCE).size} x {refs.get(DIFFUSION_REFERENCE).size}) "
        "for the diffusion recipes (see [BI-DiffSR](../bidiffsr.md) for the paper-size figures). A recipe is used "
        'by name: `binarize(model, "reactnet")`; see [Recipes](../concepts/recipes.md) for writing your own.',
        "",
        f"Full precision, `zoo:{REFERENCE}` costs **{refs.get(REFERENCE).fp.params_m:.4f} M** params and "
        f"**{refs.get(REFERENCE).fp.ops_g:.5f} G** ops in the paper convention, `zoo:{DIFFUSION_REFERENCE}` "
        f"**{refs.get(DIFFUSION_REFERENCE).fp.params_m:.4f} M** and **{refs.get(DIFFUSION_REFERENCE).fp.ops_g:.5f} G**; "
        "the tables give each recipe's figures and the number of layers it replaced. "
        "*Extras* are ReActNet's learnable input shift (RSign), the output activation, identity shortcuts and the "
        "factories of the recipe's [graph rules](../concepts/graph-rules.md).",
        "",
    ]
    # One table per reference network (no "on" column), the two binarizers in one column: the table fits the
    # content column of a 1280 px wide window.
    header = ["recipe", "paper", "weights / inputs", "scale", "extras", "replaced", "params (M)", "ops (G)"]
    for reference in dict.fromkeys(r["reference"] for r in rows):
        out += [f"## On {reference}", ""]
        table_rows = [
            [f"[`{r['name']}`]({r['name']}.md)", r["paper"], f"{r['weights']} / {r['inputs']}", r["scale"],
             r["extras"], str(r["replaced"]), r["params"], r["ops"]]
            for r in rows if r["reference"] == reference
        ]
        out += [_table(header, table_rows), ""]
    return "\n".join(out)


def render_all() -> dict[str, str]:
    """``{docs path: Markdown}`` for the gallery index and every shipped recipe."""
    refs = References()
    pages: dict[str, str] = {}
    rows = []
    for name in available_recipes():
        text, row = recipe_page(name, refs)
        pages[f"{GALLERY_DIR}/{name}.md"] = text
        rows.append(row)
    pages[f"{GALLERY_DIR}/index.md"] = index_page(rows, refs)
    return pages
