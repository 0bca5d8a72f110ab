"""Image shards (DESIGN.md contract 2): WebDataset tars of samples (``records``), a manifest of the finished ones
(``sets``), and an index beside each tar for training (``index``). Everything a stage needs is importable from here.
"""

from img2prompt.shards.index import (
    INDEX_SUFFIX,
    INDEX_VERSION,
    ShardColumns,
    index_path,
    prompt_hash,
    read_index,
    save_index,
    scan_shard,
    sha256_file,
    shard_index,
    write_index,
)
from img2prompt.shards.records import (
    IMAGE_EXTENSIONS,
    Label,
    Sample,
    decode_sample,
    encode_image,
    read_labels,
    record_embedding,
    record_image,
    record_meta,
    sample_key,
)
from img2prompt.shards.sets import (
    MANIFEST,
    Manifest,
    find_shards,
    is_shards,
    iter_records,
    iter_samples,
    read_record,
    shard_entries,
    write_shard,
)

__all__ = [
    "IMAGE_EXTENSIONS", "INDEX_SUFFIX", "INDEX_VERSION", "MANIFEST", "Label", "Manifest", "Sample",
    "ShardColumns", "decode_sample", "encode_image", "find_shards", "index_path", "is_shards", "iter_records",
    "iter_samples", "prompt_hash", "read_index", "read_labels", "read_record", "record_embedding",
    "record_image", "record_meta", "sample_key", "save_index", "scan_shard", "sha256_file", "shard_entries",
    "shard_index", "write_index", "write_shard",
]
