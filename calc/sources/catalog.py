"""Finding specs: catalog names (case-insensitive, with aliases), our YAML files, HF config.json.

Only the file that is asked for is read; the whole catalog is read only to list it or to
resolve an alias. Nothing here touches the network.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from calc.errors import LLMCalcError
from calc.memo import per_spec
from calc.sources.safeload import load_mapping
from calc.specs import GPUSpec, ModelSpec, spec_from_mapping
from calc.specs.system import SystemSpec

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the calc/ package
SpecT = TypeVar("SpecT", ModelSpec, GPUSpec, SystemSpec)


def catalog_dir(folder: str) -> Path:
    """Where a catalog lives: inside the installed package, else at the top of a source checkout."""
    installed = _PACKAGE_DIR / folder
    return installed if installed.is_dir() else _PACKAGE_DIR.parent / folder


def _key(name: str) -> str:
    """Lookup key: lower case with punctuation dropped, so 'Llama-2-7B' == 'llama2-7b'."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@cache
def _catalog_files(folder: str) -> dict[str, Path]:
    return {_key(p.stem): p for p in sorted(catalog_dir(folder).glob("*.yaml"))}


_LOADED: dict[tuple[type, Path], Any] = {}  # each shipped file parsed once a process, whichever option named it


def _load_catalog_file(cls: type[SpecT], path: Path, field: str) -> SpecT:
    spec = _LOADED.get((cls, path))
    if spec is None:
        spec = _LOADED[cls, path] = spec_from_mapping(cls, load_mapping(path, field), path.name, field)
    return spec


@cache
def list_specs(cls: type[SpecT], folder: str) -> tuple[SpecT, ...]:
    return tuple(_load_catalog_file(cls, p, folder) for p in _catalog_files(folder).values())


def _specs_mentioning(cls: type[SpecT], folder: str, key: str) -> Iterator[SpecT]:
    """The catalog's specs, in listing order, without parsing the files that cannot name ``key``.

    A YAML scalar written without backslash escapes keeps its characters in the file's text (folded
    lines only add spaces), so a name or alias whose _key is ``key`` leaves ``key`` in the _key of its
    file's text; a file without a backslash whose keyed text lacks ``key`` can hold no such value."""
    for path in _catalog_files(folder).values():
        text = path.read_text(encoding="utf-8", errors="replace")
        if "\\" in text or key in _key(text):
            yield _load_catalog_file(cls, path, folder)


MAX_NAME_CHARS = 4096  # a path can be long; a catalog name is short


def _exists(arg: str) -> bool:
    """Whether anything is at ``arg`` (a name too long for the OS or with a NUL byte is not a file)."""
    try:
        os.stat(arg)
    except (OSError, ValueError):
        return False
    return True


# A HuggingFace id (owner/name, no file suffix) that is no file here: looked up in the catalog, never read as a path.
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(?<!\.json)(?<!\.yaml)(?<!\.yml)$", re.IGNORECASE)
# The suffixes of chat / instruction-tuned checkpoints, which keep the base model's config.json (Llama-3.1-8B-Instruct,
# gemma-2-9b-it, Llama-2-7b-chat-hf). A dated re-release (Qwen3-30B-A3B-Instruct-2507) may change the context window
# and is not folded onto its base: it gets the did-you-mean list instead.
_TUNED = re.compile(r"-(instruct|chat|it)(?=(-hf)?$)", re.IGNORECASE)


def _tuned_base(arg: str) -> str | None:
    """The lookup key of an instruction-tuned Hub id's base (``meta-llama/Llama-3.1-8B-Instruct`` -> that of
    ``meta-llama/Llama-3.1-8B``; ``meta-llama/Llama-2-7b-chat-hf`` -> ``meta-llama/Llama-2-7b-hf``), or None when the
    name is no owner/name id, carries no such suffix or is a file. The Hub's owner/name is one release (a bare
    ``mistral-7b-instruct`` could be v0.1, with the base's sliding window, or v0.2 / v0.3 without)."""
    if _exists(arg) or not _HF_ID.match(arg):  # a Hub id only: a bare "mistral-7b-instruct" names no release
        return None
    base = _TUNED.sub("", arg)
    return _key(base) if base != arg else None


def _looks_like_path(arg: str) -> bool:
    return "/" in arg or "\\" in arg or arg.lower().endswith((".yaml", ".yml", ".json"))


def _by_alias(cls: type[SpecT], key: str, folder: str) -> SpecT | None:
    for spec in _specs_mentioning(cls, folder, key):
        if key in {_key(alias) for alias in spec.aliases}:
            return spec
    return None


def _resolve(cls: type[SpecT], arg: str, folder: str, field: str, kind: str) -> SpecT:
    """Catalog name, then an existing file (a downloaded HF model folder: its config.json), then a
    catalog alias (HF ids such as ``meta-llama/Llama-2-7b-hf`` contain "/" yet are aliases), then a
    path that is missing or unusable, which the loader names."""
    arg = os.fspath(arg) if isinstance(arg, os.PathLike) else arg  # a pathlib.Path from a Python caller
    if not isinstance(arg, str) or not arg.strip():
        raise LLMCalcError(field, f"give a {kind} name; `llmcalc {kind}s` lists them")
    if len(arg) > MAX_NAME_CHARS:
        raise LLMCalcError(field, f"{kind} name is {len(arg)} characters long; the limit is {MAX_NAME_CHARS}")
    files = _catalog_files(folder)
    key = _key(arg)
    if key in files:
        return _load_catalog_file(cls, files[key], field)
    if _exists(arg):
        folder_config = Path(arg) / "config.json"
        if not os.path.isdir(arg):
            return _load_path(cls, Path(arg), field)
        if cls is ModelSpec and folder_config.is_file():
            return _load_path(cls, folder_config, field)
    spec = _by_alias(cls, key, folder) if key else None
    if spec is not None:
        return spec
    if cls is GPUSpec and (bare := _device_name_key(arg)) != key:  # a name as nvidia-smi / rocm-smi print it
        spec = (_load_catalog_file(cls, files[bare], field) if bare in files else _by_alias(cls, bare, folder)) if bare else None
        if spec is not None:
            return spec
    if cls is ModelSpec and (tuned := _tuned_base(arg)) is not None:
        spec = _load_catalog_file(cls, files[tuned], field) if tuned in files else _by_alias(cls, tuned, folder)
        if spec is not None:  # an instruction-tuned checkpoint of a catalog model: the same architecture
            from calc.sanity import note

            note(field, f"{arg} read as {spec.name}: its chat / instruct tuning keeps the base's architecture")
            return spec
    if _looks_like_path(arg) and not (cls is ModelSpec and _HF_ID.match(arg)):
        return _load_path(cls, Path(arg), field)  # names the missing file
    specs = list_specs(cls, folder)
    names = [s.name for s in specs] + [a for s in specs for a in s.aliases]
    asked = arg.split("/")[-1].lower() if cls is ModelSpec and _HF_ID.match(arg) else arg.lower()
    # the catalog names the asked one starts with (its base, longest first), then the closest spellings
    close = difflib.get_close_matches(asked, names, n=3, cutoff=0.5)
    based = [] if close and _key(close[0]) == _key(asked)[:len(_key(close[0]))] else \
        sorted({s.name for s in specs if len(_key(s.name)) >= 5 and _key(asked).startswith(_key(s.name))},
               key=lambda n: -len(_key(n)))[:1]
    near = based + [n for n in close if n not in based]
    near += [n for n in names if _key(n).startswith(_key(asked)) and n not in near and "/" not in n][:2]
    hint = f"did you mean {', '.join(near)}?" if near else f"`llmcalc {kind}s` lists them"
    if cls is GPUSpec:
        hint += "; or pass a GPU YAML file (`llmcalc show h100 --yaml` prints a template)"
    shown = arg if len(arg) <= 80 else arg[:80] + "..."
    raise LLMCalcError(field, f"unknown {kind} {shown!r}; {hint}")


# The words device queries put around a catalog name: nvidia-smi "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB",
# "NVIDIA GeForce RTX 4090"; rocm-smi / amd-smi "AMD Instinct MI300X".
_DEVICE_WORDS = re.compile(r"^(nvidia|amd|instinct|geforce|\s)+|(sxm[45]?|hbm[23]e?|\s)+$|\s(hbm[23]e?|sxm[45]?)\b",
                           re.IGNORECASE)


def _device_name_key(arg: str) -> str:
    """The lookup key of a device-query name without its vendor and packaging words ('NVIDIA H100 80GB HBM3' ->
    'h10080gb', an alias of h100-sxm; 'NVIDIA B200' -> 'b200')."""
    name = arg.replace("-", " ").replace("_", " ")
    previous = None
    while previous != name:
        previous, name = name, _DEVICE_WORDS.sub(" ", name).strip()
    return _key(name)


# Fields only the other kind of spec has: a GPU YAML given as a model (e.g. to `show`) is judged as a GPU.
_GPU_ONLY = {"hbm_tb_s", "datasheet_peak_tflops", "memory_gb", "arch"}
_MODEL_ONLY = {"num_layers", "hidden_size", "num_heads", "vocab_size", "model_type"}
# keys of a HuggingFace config.json that our model YAML never has (it says num_layers / num_heads / intermediate_size)
_HF_ONLY = {"num_hidden_layers", "num_attention_heads", "architectures", "torch_dtype", "n_layer", "n_head"}


# Specs read from a file in this process, by (class, name): a result names its GPU and model, and what picks its band
# (the GPU's generation, MoE or dense: calc.report.confidence) is read back from that name, which the catalog does not
# hold for a file's spec.
_FROM_FILES: dict[tuple[type, str], Any] = {}


def loaded_from_file(cls: type[SpecT], name: str) -> SpecT | None:
    """The spec of class ``cls`` named ``name`` that a file (our YAML, a config.json) gave this process, else None."""
    return _FROM_FILES.get((cls, name))


def _load_path(cls: type[SpecT], path: Path, field: str) -> SpecT:
    spec = _read_path(cls, path, field)
    _FROM_FILES[(cls, spec.name)] = spec
    return spec


def _read_path(cls: type[SpecT], path: Path, field: str) -> SpecT:
    data = load_mapping(path, field)
    other, other_kind, flag = (GPUSpec, "GPU", "--gpu") if cls is ModelSpec else (ModelSpec, "model", "MODEL")
    if data.keys() & (_GPU_ONLY if cls is ModelSpec else _MODEL_ONLY) and not data.keys() & (
        _MODEL_ONLY if cls is ModelSpec else _GPU_ONLY
    ):
        spec_from_mapping(other, data, f"{other_kind} spec {path}", field)  # a broken file names itself
        raise LLMCalcError(field, f"{path} is a {other_kind} spec; pass it as {flag}")
    # an HF config.json without its model_type (keys only transformers writes): name that, not our YAML's fields
    if cls is ModelSpec and "model_type" not in data and data.keys() & _HF_ONLY and "num_layers" not in data:
        raise LLMCalcError(field, f"{path}: field 'model_type' is missing; a HuggingFace config.json names its "
                                  "architecture there (e.g. \"llama\"), which picks the family's layer rules")
    if cls is ModelSpec and "model_type" in data:
        from calc.sources.hf import model_from_hf_config

        if not data.get("_name_or_path") and not data.get("name"):  # named as `import` names it: one name per file
            data = {**data, "_name_or_path": config_name(Path(path))}
        return model_from_hf_config(data, where=str(path), field=field)
    spec = spec_from_mapping(cls, data, str(path), field)
    if isinstance(spec, GPUSpec):
        _warn_peak_mismatch(spec, path, field)
        _warn_unknown_arch(spec, path, field)
    return spec


def _warn_unknown_arch(gpu: GPUSpec, path: Path, field: str) -> None:
    """A GPU file whose ``arch`` names no generation the catalog ships (its GEMM plateau, HBM efficiency, attention and
    collective tables are keyed by it) is priced at the generic "other" defaults: said, not silent ("Hoper")."""
    from calc.sanity import warn

    known = sorted({g.arch for g in list_gpus()})
    if gpu.arch not in known:
        warn(field, f"{path}: arch {gpu.arch!r} is none of the catalog's generations ({', '.join(known)}); its "
                    "efficiencies are the generic defaults (GEMM plateau, HBM, attention): give one of them if it is one")


def _warn_peak_mismatch(gpu: GPUSpec, path: Path, field: str) -> None:
    """A GPU file whose derived peak (SMs x tensor cores x clock x FLOPs per clock, calc.hardware.peaks) is more than
    2% off its datasheet peak, with no peak_note saying why, is warned about: the datasheet figure is the one used,
    and a typo in either is otherwise silent (the shipped catalog's two such gaps carry their notes)."""
    from calc.sanity import warn

    if gpu.peak_note:
        return
    for dtype, derived in gpu.derived_peaks().items():
        sheet = gpu.datasheet_peak_tflops.get(dtype)
        if sheet and abs(derived / sheet - 1) > 0.02:
            warn(field, f"{path}: {dtype} peak derived from sms x tensor_cores_per_sm x tensor_clock_mhz x "
                        f"flops_per_clock_per_tensor_core is {derived:,.1f} TFLOPS, the datasheet_peak_tflops "
                        f"{sheet:g} ({derived / sheet - 1:+.0%}); the datasheet figure is used: check both, or say why "
                        "in peak_note")


def load_model(arg: str, field: str = "MODEL") -> ModelSpec:
    """A model by catalog name/alias, a path to our YAML, or a path to a HuggingFace config.json.

    >>> load_model("Llama-2-7b").num_layers
    32
    """
    return _resolve(ModelSpec, arg, "model_configs", field, "model")


def load_gpu(arg: str, field: str = "--gpu") -> GPUSpec:
    """A GPU by catalog name/alias (``h100``, ``A800``) or a path to a GPU YAML spec."""
    return _resolve(GPUSpec, arg, "hardware_specs", field, "gpu")


def list_models() -> tuple[ModelSpec, ...]:
    return list_specs(ModelSpec, "model_configs")


def family_matches(m: ModelSpec, family: str) -> bool:
    """Whether ``family`` is a prefix of the model's name or an alias, punctuation ignored ('qwen3' matches
    qwen3-8b and qwen3-30b-a3b, not qwen2.5-7b; 'gpt-oss' matches gpt-oss-20b)."""
    key = _key(family)
    return any(_key(n).startswith(key) or _key(n.split("/")[-1]).startswith(key) for n in [m.name, *m.aliases])


def list_gpus() -> tuple[GPUSpec, ...]:
    return list_specs(GPUSpec, "hardware_specs")


def dump_spec(spec: BaseModel) -> dict[str, Any]:
    """A spec as a plain mapping (defaults left out), ready for yaml.safe_dump."""
    return spec.model_dump(mode="json", exclude_defaults=True)


def load_system(arg: str, field: str = "--system") -> SystemSpec:
    """A node type (GPUs per node, NVLink and NIC bandwidth) by catalog name/alias or YAML path."""
    return _resolve(SystemSpec, arg, "system_specs", field, "system")


def list_systems() -> tuple[SystemSpec, ...]:
    return list_specs(SystemSpec, "system_specs")


@per_spec
def system_for_gpu(gpu: GPUSpec) -> SystemSpec | None:
    """The shipped node type built from this GPU (first by name), or None when none is shipped."""
    return next((s for s in _specs_mentioning(SystemSpec, "system_specs", _key(gpu.name)) if s.gpu == gpu.name), None)


def spec_yaml(spec: BaseModel, comments: list[str]) -> str:
    """A spec as our catalog YAML: ``# comment`` lines (source, published total), then the fields that
    differ from their defaults, in declaration order."""
    import yaml

    body = yaml.safe_dump(dump_spec(spec), sort_keys=False, default_flow_style=None, width=140)
    return "".join(f"# {line}\n" for line in comments) + body


def config_name(path: Path) -> str:
    """The model name of a config.json that records none (no ``_name_or_path``): its folder for a file named
    config.json (a HuggingFace snapshot), else the file's stem; `import` and every command name it so."""
    return path.resolve().parent.name if path.stem == "config" else path.stem
