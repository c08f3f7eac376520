"""The inspection path: where a model comes from (sources), the walk on meta tensors (walk,
shapes, fields), what comes out (report), the size scan (sizes), measured latency (timing),
and how it is shown (render, pictures). Nothing here imports ``cnnshape.train``."""
