"""File formats (metadata, cells, per-image predictions, msgpack shards), image decoding and transforms,
datasets and the one DataLoader builder, feature cache, scene labels and the embedded proxy dataset."""
