"""Discrete speech units at 25 Hz from a Whisper encoder (CosyVoice-style supervised tokens).

Used by data preparation, inference and evaluation, never inside the model or the training stages:
``features`` (a Whisper encoder cut after one layer, pooled 50 -> 25 Hz, ``n_codes``), ``kmeans``
(the codebook fit), ``tokenizer`` (``SpeechTokenizer``: train, save/load, encode), ``clips`` and
``extract`` (reading shards, writing shards with ``speech_tokens``), ``cosyvoice`` (CosyVoice's ONNX
tokenizer and CAM++ speaker encoder) and ``cli`` (``python -m osum.speech_tokens``).
"""

from osum.speech_tokens.features import LayerFeatures, n_codes
from osum.speech_tokens.kmeans import KMeansResult, assign, fit_kmeans
from osum.speech_tokens.tokenizer import SpeechTokenizer

__all__ = ["KMeansResult", "LayerFeatures", "SpeechTokenizer", "assign", "fit_kmeans", "n_codes"]
