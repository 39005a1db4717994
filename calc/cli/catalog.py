"""Catalog commands: `models`, `gpus`, `systems`, `show`, `import`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from calc.cli.options import JsonOpt, human_float
from calc.errors import LLMCalcError

FamilyOpt = Annotated[str | None, typer.Option(
    "--family", help="name prefix: llama, llama4, qwen, qwen3, gemma3, deepseek, gpt-oss, glm, phi, mistral ...")]
MinParamsOpt = Annotated[float | None, typer.Option(
    "--min-params", parser=human_float("--min-params"), help="only models with at least this many parameters (7B, 500M)")]
MaxParamsOpt = Annotated[float | None, typer.Option(
    "--max-params", parser=human_float("--max-params"), help="only models with at most this many parameters (70B)")]


def models(family: FamilyOpt = None, min_params: MinParamsOpt = None, max_params: MaxParamsOpt = None,
           as_json: JsonOpt = False) -> None:
    """List the model catalog with exact parameter counts; filter by family (name prefix) and total size."""
    from calc.model.params import count_params
    from calc.report.render import console, emit_json, models_view
    from calc.sources.catalog import family_matches, list_models
    from calc.units import count

    if min_params is not None and max_params is not None and min_params > max_params:
        raise LLMCalcError("--min-params", f"{count(min_params)} exceeds --max-params {count(max_params)}")
    rows = []
    for m in list_models():
        if family and not family_matches(m, family):
            continue
        p = count_params(m)
        if (min_params is not None and p.total_params < min_params) or (max_params is not None and p.total_params > max_params):
            continue
        rows.append({"name": m.name, "aliases": m.aliases, "description": m.description, "num_layers": m.num_layers,
                     "hidden_size": m.hidden_size, "num_heads": m.num_heads, "num_kv_heads": m.kv_heads,
                     "total_params": p.total_params, "active_params": p.active_params})
    if not rows:
        raise LLMCalcError("--family" if family else "--min-params", "no catalog model matches; `llmcalc models` lists them all")
    if as_json:
        emit_json({"models": rows})
        return
    console.print(models_view(rows))


def gpus(as_json: JsonOpt = False) -> None:
    """List the GPU catalog with derived and datasheet dense peaks."""
    from calc.hardware.peaks import summarize_gpu
    from calc.report.render import console, emit_json, gpus_view
    from calc.sources.catalog import list_gpus

    summaries = [summarize_gpu(g) for g in list_gpus()]
    if as_json:
        emit_json(summaries)
        return
    console.print(gpus_view(summaries))


YamlOpt = Annotated[bool, typer.Option(
    "--yaml", help="print the spec as our YAML: a template to edit and pass back as MODEL or --gpu FILE")]


def _print_spec_yaml(spec: Any, comment: str) -> None:
    """`show NAME --yaml`: the spec as our YAML, whole lines (a template to edit and pass back)."""
    from calc.report.render import console
    from calc.sources.catalog import spec_yaml

    console.print(spec_yaml(spec, [comment]), end="", markup=False, highlight=False, soft_wrap=True)


def _show_spec(spec: Any, comment: str, as_json: bool, as_yaml: bool) -> None:
    """A model or node spec as `show` prints it: our YAML (--yaml), JSON (--json), or its fields as a table."""
    from calc.report.render import console, emit_json, spec_view

    if as_yaml:
        _print_spec_yaml(spec, comment)
    elif as_json:
        emit_json(spec)
    else:
        console.print(spec_view(spec))


def _system_named(name: str) -> Any:
    """The shipped node type (``llmcalc systems``) of that catalog name or alias, else None: `show dgx-h100` shows a
    node as `show h100` shows its GPU. A file path is never read as a node here (the model and GPU loaders name
    what they saw in it)."""
    from calc.sources.catalog import load_system

    if "/" in name or name.endswith((".yaml", ".yml", ".json")):
        return None
    try:
        return load_system(name, "NAME")
    except LLMCalcError:
        return None


def _closer(name: str, model_error: LLMCalcError, gpu_error: LLMCalcError) -> LLMCalcError:
    """`show NAME` matched neither catalog: the suggestion of the catalog whose first candidate is nearer NAME (models
    and GPUs are searched alike), both named when neither has one."""
    import difflib
    import re

    def first(error: LLMCalcError) -> str | None:
        hit = re.search(r"did you mean ([^,?;]+)", error.problem)
        return hit.group(1).strip() if hit else None

    unknown = [e for e in (model_error, gpu_error) if e.problem.startswith(("unknown model", "unknown gpu"))]
    if not unknown:  # a spec file neither reads: the model loader's reason (it names the kind of spec it saw)
        return model_error
    if len(unknown) == 1:  # a name one catalog found and refused: that catalog's own reason
        return next(e for e in (gpu_error, model_error) if e not in unknown)
    m, g = first(model_error), first(gpu_error)
    if m is None and g is None:
        return LLMCalcError("NAME", f"unknown model or GPU {name!r}; `llmcalc models` and `llmcalc gpus` list them")
    score = {key: difflib.SequenceMatcher(None, name.lower(), hit.lower()).ratio() for key, hit in (("m", m), ("g", g)) if hit}
    best = max(score, key=score.__getitem__)
    error = model_error if best == "m" else gpu_error
    return LLMCalcError("NAME", re.sub(r"^unknown (model|gpu)", "unknown model or GPU", error.problem))


def show(name: Annotated[str, typer.Argument(help="a model, GPU or node (systems) name, or a spec file")], as_json: JsonOpt = False,
         as_yaml: YamlOpt = False) -> None:
    """Show one model, GPU or node spec (GPUs with their peak derivation); --yaml prints it as a spec file."""
    from calc.hardware.peaks import summarize_gpu
    from calc.report.render import emit, gpu_detail_view
    from calc.sources.catalog import load_gpu, load_model

    if as_json and as_yaml:
        raise LLMCalcError("--yaml", "give one of --json and --yaml")
    try:
        spec = load_model(name, "NAME")
    except LLMCalcError as model_error:
        system = _system_named(name)
        gpu, gpu_error = None, None
        if system is None or system.name != name.strip().lower():  # a node's own name comes before a GPU's alias of it
            try:
                gpu = load_gpu(name, "NAME")
            except LLMCalcError as exc:
                gpu_error = exc
        if gpu is None:
            if system is None:
                raise _closer(name, model_error, gpu_error) from None
            _show_spec(system, f"Node spec of {system.name}: edit and pass the file as --system FILE.", as_json, as_yaml)
            return
        if as_yaml:
            _print_spec_yaml(gpu, f"GPU spec of {gpu.name}: edit the numbers (and name) and pass the file as --gpu FILE.")
            return
        emit(summarize_gpu(gpu), as_json, False, gpu_detail_view)
        return
    _show_spec(spec, f"Model spec of {spec.name}: edit and pass the file as MODEL.", as_json, as_yaml)


def import_config(
    config: Annotated[str, typer.Argument(help="a HuggingFace config.json")],
    name: Annotated[str | None, typer.Option("--name", help="model name in the YAML (default: the config's _name_or_path, "
                                                         "else the file name, or its folder for config.json)")] = None,
    write: Annotated[str | None, typer.Option("--write", help="write the YAML to this file instead of printing it")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write our model YAML for a HuggingFace config.json, so a team can keep its own catalog. Every shape
    must come from the config: a field left to a family default is refused, naming the field. --json: the spec
    (as `show --json`), its exact counts, the YAML text and the file written (null when printed)."""
    from pathlib import Path

    from calc.model.params import count_params
    from calc.report.render import console, emit_json
    from calc.sources.catalog import config_name, spec_yaml
    from calc.sources.hf import hf_mapping
    from calc.sources.safeload import load_mapping
    from calc.specs import ModelSpec, spec_from_mapping

    if name is not None and not name.strip():
        raise LLMCalcError("--name", "is empty; give the model name the YAML should carry, or leave --name out")
    path = Path(config)
    data = load_mapping(path, "CONFIG")
    fields = hf_mapping(data, where=str(path), field="CONFIG", strict=True)
    if name is not None or not data.get("_name_or_path"):
        fields["name"] = name or config_name(path)
    spec = spec_from_mapping(ModelSpec, fields, str(path), "--name" if name else "CONFIG")
    p = count_params(spec)
    text = spec_yaml(spec, [f"Imported by `llmcalc import {path.name}`; source: {path}.",
                            f"Exact count: {p.total_params:,} total, {p.active_params:,} active"
                            + (f", MTP {p.mtp_params:,} more" if p.mtp_params else "") + "."])
    if write is not None:
        target = Path(write)
        if target.exists():
            raise LLMCalcError("--write", f"{target} exists; choose a new file name")
        try:
            target.write_text(text)
        except OSError as exc:
            raise LLMCalcError("--write", f"cannot write {target}: {exc.strerror}") from None
    if as_json:
        emit_json({"spec": spec.model_dump(mode="json"), "total_params": p.total_params, "active_params": p.active_params,
                   "mtp_params": p.mtp_params, "yaml": text, "written": write})
    elif write is None:
        console.print(text, end="", markup=False, highlight=False, soft_wrap=True)
    else:
        console.print(f"wrote {write} ({spec.name}: {p.total_params:,} parameters)")


def systems(as_json: JsonOpt = False) -> None:
    """List the node types (GPUs per node, link inside a node, network between nodes) that train-step,
    train-plan and train-time place plans on."""
    from calc.report.render import console, emit_json
    from calc.report.training_views import systems_view
    from calc.sources.catalog import list_systems

    found = list_systems()
    if as_json:
        emit_json(list(found))
        return
    console.print(systems_view(found))
