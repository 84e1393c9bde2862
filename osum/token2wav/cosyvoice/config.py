"""The sizes of CosyVoice's flow and HiFT: the published CosyVoice-300M-25Hz values, what ``cosyvoice.yaml``
says, and what the state dicts themselves tell.

Precedence: the defaults (the published ``cosyvoice.yaml`` of CosyVoice-300M-25Hz), then the plain scalar
fields of the folder's ``cosyvoice.yaml`` (read with PyYAML, its ``!new:`` / ``!ref`` tags taken as plain
mappings and references; hyperpyyaml is not needed), then every size a state dict fixes by its shapes
(vocabulary, widths, numbers of blocks, channels, kernels), so a folder of any size loads. What no shape
tells (the code rate, attention heads of the estimator, upsampling strides, dilations, the guidance weight)
comes from the yaml or the defaults.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("osum.token2wav")

MEL_RATE = 22050  # CosyVoice v1's mel and audio rate
MEL_HOP = 256     # its mel hop: 22050 / 256 = 86.13 frames a second


def mel_frames(n_codes: int, code_rate: int) -> int:
    """CosyVoice's mel length for ``n_codes`` codes: ``int(n / rate * 22050 / 256)`` (68 for 20 codes at 25 Hz)."""
    return int(n_codes / code_rate * MEL_RATE / MEL_HOP)


@dataclass(frozen=True)
class CosyVoiceFlowConfig:
    """CosyVoice v1's ``MaskedDiffWithXvec`` with its Conformer encoder and ``ConditionalCFM`` estimator."""

    vocab_size: int = 4096
    input_size: int = 512             # code embedding width
    output_size: int = 80             # mel bins
    spk_embed_dim: int = 192          # CAM++ x-vector
    input_frame_rate: int = 25        # codes per second (the 25 Hz model; CosyVoice-300M is 50)
    encoder_dim: int = 512
    encoder_heads: int = 8
    encoder_units: int = 2048
    encoder_blocks: int = 6
    key_bias: bool = True
    macaron_style: bool = False
    use_cnn_module: bool = False
    cnn_module_kernel: int = 15
    cnn_module_norm: str = "batch_norm"
    regulator_blocks: int = 4         # len(sampling_ratios) of the InterpolateRegulator
    regulator_groups: int = 1
    estimator_in_channels: int = 320  # x, mu, speaker, prompt condition: 4 x 80
    channels: tuple[int, ...] = (256, 256)
    attention_head_dim: int = 64
    num_heads: int = 8
    n_blocks: int = 4
    num_mid_blocks: int = 12
    ff_inner: int = 1024              # 4 x channels[0]
    inference_cfg_rate: float = 0.7
    t_scheduler: str = "cosine"
    steps: int = 10
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.estimator_in_channels != 4 * self.output_size:
            raise ValueError(f"cosyvoice flow: the estimator takes x, mu, speaker and prompt ({4 * self.output_size} "
                             f"channels for {self.output_size} mel bins), got {self.estimator_in_channels}")
        if self.t_scheduler not in ("cosine", "linear"):
            raise ValueError(f"cosyvoice flow: t_scheduler must be cosine or linear, got {self.t_scheduler!r}")
        if self.cnn_module_norm not in ("batch_norm", "layer_norm"):
            raise ValueError(f"cosyvoice flow: cnn_module_norm must be batch_norm or layer_norm, "
                             f"got {self.cnn_module_norm!r}")
        if self.input_frame_rate <= 0 or self.steps < 1:
            raise ValueError("cosyvoice flow: input_frame_rate must be > 0 and steps >= 1")


@dataclass(frozen=True)
class HiFTConfig:
    """CosyVoice v1's ``HiFTGenerator`` (NSF source + iSTFT) with its ``ConvRNNF0Predictor``."""

    in_channels: int = 80
    base_channels: int = 512
    nb_harmonics: int = 8
    sampling_rate: int = MEL_RATE
    nsf_alpha: float = 0.1
    nsf_sigma: float = 0.003
    nsf_voiced_threshold: float = 10.0
    upsample_rates: tuple[int, ...] = (8, 8)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16)
    n_fft: int = 16
    hop_len: int = 4
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    source_resblock_kernel_sizes: tuple[int, ...] = (7, 11)
    source_resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5))
    lrelu_slope: float = 0.1
    audio_limit: float = 0.99
    f0_cond_channels: int = 512
    f0_num_class: int = 1

    @property
    def upsample_scale(self) -> int:
        """Audio samples per mel frame: prod(upsample_rates) * hop_len (256)."""
        scale = self.hop_len
        for rate in self.upsample_rates:
            scale *= rate
        return scale

    def __post_init__(self) -> None:
        if self.sampling_rate != MEL_RATE:
            raise ValueError(f"cosyvoice hift: only CosyVoice v1's {MEL_RATE} Hz HiFT is supported, "
                             f"got sampling_rate {self.sampling_rate}")
        if self.upsample_scale != MEL_HOP:
            raise ValueError(f"cosyvoice hift: prod(upsample_rates) * hop_len must be the mel hop {MEL_HOP}, "
                             f"got {list(self.upsample_rates)} * {self.hop_len}")
        if len(self.upsample_kernel_sizes) != len(self.upsample_rates):
            raise ValueError("cosyvoice hift: one upsample kernel size per upsample rate")
        if len(self.source_resblock_kernel_sizes) != len(self.upsample_rates):
            raise ValueError("cosyvoice hift: one source resblock per upsampling stage")


# ---------------------------------------------------------------------------------------------- cosyvoice.yaml
class _Ref(str):
    """A hyperpyyaml ``!ref <name>``: resolved against the top-level scalars."""


def _yaml_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def tagged(loader, suffix, node):
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        value = loader.construct_scalar(node)
        return _Ref(value) if suffix == "ref" else value

    Loader.add_multi_constructor("!", tagged)
    return Loader


def read_yaml(path: str | Path) -> dict[str, Any]:
    """``cosyvoice.yaml`` as nested dicts (tags dropped); {} with a warning when it cannot be parsed."""
    import yaml

    try:
        doc = yaml.load(Path(path).read_text(), Loader=_yaml_loader())  # a SafeLoader: plain data only
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        log.warning("%s: not readable (%s); using the published CosyVoice-300M-25Hz settings", path, e)
        return {}
    return doc if isinstance(doc, dict) else {}


def _lookup(doc: dict[str, Any], dotted: str) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
        if isinstance(node, dict) and set(node) == {"content"}:  # !new:omegaconf.DictConfig {content: ...}
            node = node["content"]
    if isinstance(node, _Ref):
        match = re.fullmatch(r"\s*<([\w.]+)>\s*", node)
        return _lookup(doc, match.group(1)) if match else None
    return node


def _convert(value: Any, kind: type, path: Path, key: str) -> Any:
    try:
        if kind is bool:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind is tuple:  # a list of ints, or of lists of ints
            return tuple(tuple(int(v) for v in x) if isinstance(x, list) else int(x) for x in value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise TypeError
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: {key} = {value!r} is not a {kind.__name__}") from None


FLOW_YAML = {  # CosyVoiceFlowConfig field: key in cosyvoice.yaml
    "vocab_size": "flow.vocab_size", "input_size": "flow.input_size", "output_size": "flow.output_size",
    "spk_embed_dim": "flow.spk_embed_dim", "input_frame_rate": "flow.input_frame_rate",
    "encoder_heads": "flow.encoder.attention_heads", "encoder_units": "flow.encoder.linear_units",
    "encoder_blocks": "flow.encoder.num_blocks", "key_bias": "flow.encoder.key_bias",
    "macaron_style": "flow.encoder.macaron_style", "use_cnn_module": "flow.encoder.use_cnn_module",
    "cnn_module_kernel": "flow.encoder.cnn_module_kernel", "cnn_module_norm": "flow.encoder.cnn_module_norm",
    "regulator_groups": "flow.length_regulator.groups",
    "attention_head_dim": "flow.decoder.estimator.attention_head_dim",
    "num_heads": "flow.decoder.estimator.num_heads", "n_blocks": "flow.decoder.estimator.n_blocks",
    "num_mid_blocks": "flow.decoder.estimator.num_mid_blocks", "channels": "flow.decoder.estimator.channels",
    "inference_cfg_rate": "flow.decoder.cfm_params.inference_cfg_rate",
    "t_scheduler": "flow.decoder.cfm_params.t_scheduler",
}
HIFT_YAML = {
    "in_channels": "hift.in_channels", "base_channels": "hift.base_channels", "nb_harmonics": "hift.nb_harmonics",
    "sampling_rate": "hift.sampling_rate", "nsf_alpha": "hift.nsf_alpha", "nsf_sigma": "hift.nsf_sigma",
    "nsf_voiced_threshold": "hift.nsf_voiced_threshold", "upsample_rates": "hift.upsample_rates",
    "upsample_kernel_sizes": "hift.upsample_kernel_sizes", "n_fft": "hift.istft_params.n_fft",
    "hop_len": "hift.istft_params.hop_len", "resblock_kernel_sizes": "hift.resblock_kernel_sizes",
    "resblock_dilation_sizes": "hift.resblock_dilation_sizes",
    "source_resblock_kernel_sizes": "hift.source_resblock_kernel_sizes",
    "source_resblock_dilation_sizes": "hift.source_resblock_dilation_sizes", "lrelu_slope": "hift.lrelu_slope",
    "audio_limit": "hift.audio_limit", "f0_cond_channels": "hift.f0_predictor.cond_channels",
    "f0_num_class": "hift.f0_predictor.num_class",
}


def _from_yaml(cls: type, table: dict[str, str], doc: dict[str, Any], path: Path) -> dict[str, Any]:
    kinds = {f.name: f.type for f in fields(cls)}
    out = {}
    for name, key in table.items():
        value = _lookup(doc, key)
        if value is None:
            continue
        kind = {"int": int, "float": float, "bool": bool, "str": str}.get(str(kinds[name]), tuple)
        out[name] = _convert(value, kind, path, key)
    act = _lookup(doc, "flow.decoder.estimator.act_fn") if cls is CosyVoiceFlowConfig else None
    if act is not None and act != "gelu":
        raise ValueError(f"{path}: flow.decoder.estimator.act_fn = {act!r}; only CosyVoice's 'gelu' is supported")
    return out


def yaml_settings(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(flow fields, hift fields) that ``cosyvoice.yaml`` sets, as ``CosyVoiceFlowConfig`` / ``HiFTConfig`` names."""
    path = Path(path)
    doc = read_yaml(path)
    return _from_yaml(CosyVoiceFlowConfig, FLOW_YAML, doc, path), _from_yaml(HiFTConfig, HIFT_YAML, doc, path)


# ---------------------------------------------------------------------------------------------- state dicts
def _checked(path: str | Path, make, *args: Any, **kwargs: Any) -> Any:
    """``make(*args, **kwargs)``, its ValueError prefixed with the file it was read from."""
    try:
        return make(*args, **kwargs)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


class _Shapes:
    """Shapes of a state dict's tensors, with errors that name the file and the key."""

    def __init__(self, state: dict[str, torch.Tensor], path: str | Path, what: str):
        self.state, self.path, self.what = state, path, what

    def __call__(self, key: str) -> tuple[int, ...]:
        if key not in self.state:
            raise ValueError(f"{self.path}: no key {key!r}: not a CosyVoice-300M {self.what} state dict "
                             f"(it has {len(self.state)} keys, e.g. {sorted(self.state)[:3]})")
        return tuple(self.state[key].shape)

    def has(self, key: str) -> bool:
        return key in self.state

    def count(self, prefix: str) -> int:
        """How many ``prefix{i}.`` indices there are (0, 1, ... without gaps counted up to the largest)."""
        pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
        found = {int(m.group(1)) for k in self.state if (m := pattern.match(k))}
        return max(found) + 1 if found else 0


def flow_config_from_state(state: dict[str, torch.Tensor], base: CosyVoiceFlowConfig, path: str | Path
                           ) -> CosyVoiceFlowConfig:
    """``base`` with every size that ``flow.pt``'s shapes fix taken from them."""
    shape = _Shapes(state, path, "flow")
    vocab, input_size = shape("input_embedding.weight")
    output_size, spk_dim = shape("spk_embed_affine_layer.weight")
    encoder_dim, _ = shape("encoder.embed.out.0.weight")
    blocks = shape.count("encoder.encoders.")
    layer = "encoder.encoders.0."
    heads, _ = shape(layer + "self_attn.pos_bias_u")
    units, _ = shape(layer + "feed_forward.w_1.weight")
    use_cnn = shape.has(layer + "conv_module.depthwise_conv.weight")
    kernel = shape(layer + "conv_module.depthwise_conv.weight")[-1] if use_cnn else base.cnn_module_kernel
    norm = base.cnn_module_norm
    if use_cnn:
        norm = "batch_norm" if shape.has(layer + "conv_module.norm.running_mean") else "layer_norm"
    est = "decoder.estimator."
    channels = tuple(shape(f"{est}down_blocks.{i}.0.block1.block.0.weight")[0]
                     for i in range(shape.count(est + "down_blocks.")))
    if not channels:
        shape(est + "down_blocks.0.0.block1.block.0.weight")  # the error naming the missing key
    inner = shape(f"{est}down_blocks.0.1.0.attn1.to_q.weight")[0]
    head_dim, heads_dec = base.attention_head_dim, base.num_heads
    if heads_dec * head_dim != inner:  # the yaml/defaults do not fit: keep the head width, infer the heads
        if inner % head_dim:
            raise ValueError(f"{path}: the estimator's attention is {inner} wide ({est}down_blocks.0.1.0.attn1.to_q."
                             f"weight), not a multiple of attention_head_dim {head_dim}: set flow.decoder.estimator."
                             "num_heads and attention_head_dim in cosyvoice.yaml")
        heads_dec = inner // head_dim
    sizes = dict(
        vocab_size=vocab, input_size=input_size, output_size=output_size, spk_embed_dim=spk_dim,
        encoder_dim=encoder_dim, encoder_heads=heads, encoder_units=units, encoder_blocks=blocks,
        key_bias=shape.has(layer + "self_attn.linear_k.bias"),
        macaron_style=shape.has(layer + "feed_forward_macaron.w_1.weight"), use_cnn_module=use_cnn,
        cnn_module_kernel=kernel, cnn_module_norm=norm,
        regulator_blocks=(shape.count("length_regulator.model.") - 1) // 3,
        estimator_in_channels=shape(est + "time_mlp.linear_1.weight")[1], channels=channels,
        num_heads=heads_dec, attention_head_dim=head_dim, n_blocks=shape.count(est + "down_blocks.0.1."),
        num_mid_blocks=shape.count(est + "mid_blocks."),
        ff_inner=shape(f"{est}down_blocks.0.1.0.ff.net.0.proj.weight")[0])
    return _checked(path, replace, base, **sizes)


def hift_config_from_state(state: dict[str, torch.Tensor], base: HiFTConfig, path: str | Path) -> HiFTConfig:
    """``base`` with every size that ``hift.pt``'s shapes fix (keys in the parametrizations spelling)."""
    shape = _Shapes(state, path, "hift")
    wn = ".parametrizations.weight.original1"
    base_channels, in_channels, _ = shape("conv_pre" + wn)
    n_ups = shape.count("ups.")
    kernels = tuple(shape(f"ups.{i}{wn}")[-1] for i in range(n_ups))
    rates = base.upsample_rates if len(base.upsample_rates) == n_ups else ()
    if not rates:
        raise ValueError(f"{path}: {n_ups} upsampling stages (ups.*), but upsample_rates is "
                         f"{list(base.upsample_rates)}: set hift.upsample_rates in cosyvoice.yaml")
    n_res = shape.count("resblocks.")
    if n_ups == 0 or n_res % n_ups:
        raise ValueError(f"{path}: {n_res} resblocks for {n_ups} upsampling stages (ups.*)")
    per_stage = n_res // n_ups

    def dilations(prefix: str, n: int, given: tuple[tuple[int, ...], ...], key: str) -> tuple[tuple[int, ...], ...]:
        counts = [shape.count(f"{prefix}{i}.convs1.") for i in range(n)]
        if [len(d) for d in given] != counts:  # dilations are no shape: they must come from the yaml
            raise ValueError(f"{path}: {prefix}* have {counts} dilated convs (convs1.*), but {key} is "
                             f"{[list(d) for d in given]}: set {key} in cosyvoice.yaml")
        return given

    n_src = shape.count("source_resblocks.")
    classes, cond_channels = shape("f0_predictor.classifier.weight")
    sizes = dict(
        in_channels=in_channels, base_channels=base_channels, nb_harmonics=shape("m_source.l_linear.weight")[1] - 1,
        upsample_rates=rates, upsample_kernel_sizes=kernels, n_fft=shape("conv_post" + wn)[0] - 2,
        resblock_kernel_sizes=tuple(shape(f"resblocks.{j}.convs1.0{wn}")[-1] for j in range(per_stage)),
        resblock_dilation_sizes=dilations("resblocks.", per_stage, base.resblock_dilation_sizes,
                                          "hift.resblock_dilation_sizes"),
        source_resblock_kernel_sizes=tuple(shape(f"source_resblocks.{i}.convs1.0{wn}")[-1] for i in range(n_src)),
        source_resblock_dilation_sizes=dilations("source_resblocks.", n_src, base.source_resblock_dilation_sizes,
                                                 "hift.source_resblock_dilation_sizes"),
        f0_cond_channels=cond_channels, f0_num_class=classes)
    return _checked(path, replace, base, **sizes)
