"""Text-embedding throughput of new catalog items, CPU against GPU, in one run on the device. Not a test.

The catalog sync embeds a new item's ``item_text`` with all-MiniLM-L6-v2 (Sentence-BERT: BERT, mean pooling,
L2 normalisation). The device that has the GPU carries at most 64 MiB and has torch but no transformers, so:

* ``pack`` (here) tokenises the texts of a generated shop catalog (``bench/catalog_import.py``'s generator,
  read through the importer, ``item_text`` as the sync builds it) with the model's own tokenizer, stores the
  model's weights in float16 (45 MB; the run casts them back to float32 for the float32 figures) and the
  Sentence-BERT embeddings of the first texts as the reference;
* ``run`` (device, torch only) computes the same forward pass -- BERT layers, mean pooling, normalisation,
  written with ``torch.nn.functional`` -- first checks it against the reference (cosine), then times it on
  the CPU and on the GPU (float32 and float16) over every packed text, batches of ``--batch`` texts in
  length order (what Sentence-BERT's ``encode`` does). Tokenisation is CPU work, timed apart in ``pack``.

Usage:
  .venv/bin/python bench/catalog_embed_gpu.py pack --out .streamrec/device-embed --items 20000
  python bench/catalog_embed_gpu.py run --bundle .streamrec/device-embed --out "$OUT/embed.json"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length in Sentence-BERT
HEADS = 12
REFERENCE_TEXTS = 64


def pack(out: Path, items: int) -> None:
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "bench"))
    import torch
    from catalog_import import generate_csv
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from consumers.catalog_embed import bundled_text_model_path
    from streamrec.catalog.codec import CatalogKind
    from streamrec.catalog.importer import ImportOptions, read_catalog_file
    from streamrec.catalog.models import CatalogItem
    from streamrec.catalog.snapshot import item_text

    model_dir = Path(bundled_text_model_path())
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "items.csv"
        generate_csv(csv_path, items)
        result = read_catalog_file(csv_path, ImportOptions(CatalogKind.ITEMS, datetime.now(UTC)))
    texts = [item_text(record) for _, record in result.records if isinstance(record, CatalogItem)]
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    began = time.perf_counter()
    encoded = tokenizer(texts, truncation=True, max_length=MAX_TOKENS)["input_ids"]
    tokenize_s = time.perf_counter() - began
    lengths = torch.tensor([len(ids) for ids in encoded], dtype=torch.int32)
    flat = torch.tensor([t for ids in encoded for t in ids], dtype=torch.int32)
    sbert = SentenceTransformer(str(model_dir), device="cpu")
    stored = sbert[0].auto_model.state_dict()  # the BERT under Sentence-BERT's pooling and normalisation
    weights = {k: v.half() for k, v in stored.items() if "position_ids" not in k}
    reference = sbert.encode(texts[:REFERENCE_TEXTS], convert_to_tensor=True, normalize_embeddings=True)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(weights, out / "weights.pt")
    torch.save({"flat": flat, "lengths": lengths, "reference": reference.float()}, out / "texts.pt")
    info = {
        "texts": len(texts),
        "mean_tokens": float(lengths.float().mean()),
        "max_tokens": int(lengths.max()),
        "tokenize_s": tokenize_s,
        "tokenize_per_s": len(texts) / tokenize_s,
        "tokenize_machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "packed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (out / "info.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info, indent=2))


def minilm(weights: dict[str, Any], ids: Any, mask: Any) -> Any:
    """[B, L] token ids and attention mask -> [B, 384] L2-normalised mean-pooled embeddings (BERT encoder)."""
    import torch.nn.functional as F

    w = weights
    batch, length = ids.shape
    hidden = w["embeddings.word_embeddings.weight"].shape[1]
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:length]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = F.layer_norm(x, (hidden,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], 1e-12)
    attend = mask[:, None, None, :].bool()
    layer = 0
    while f"encoder.layer.{layer}.attention.self.query.weight" in w:
        p = f"encoder.layer.{layer}."

        def heads(name: str, x: Any = x, p: str = p) -> Any:
            y = F.linear(x, w[f"{p}attention.self.{name}.weight"], w[f"{p}attention.self.{name}.bias"])
            return y.view(batch, length, HEADS, hidden // HEADS).transpose(1, 2)

        a = F.scaled_dot_product_attention(heads("query"), heads("key"), heads("value"), attn_mask=attend)
        a = F.linear(a.transpose(1, 2).reshape(batch, length, hidden), w[f"{p}attention.output.dense.weight"],
                     w[f"{p}attention.output.dense.bias"])  # fmt: skip
        x = F.layer_norm(x + a, (hidden,), w[f"{p}attention.output.LayerNorm.weight"],
                         w[f"{p}attention.output.LayerNorm.bias"], 1e-12)  # fmt: skip
        h = F.gelu(F.linear(x, w[f"{p}intermediate.dense.weight"], w[f"{p}intermediate.dense.bias"]))
        h = F.linear(h, w[f"{p}output.dense.weight"], w[f"{p}output.dense.bias"])
        x = F.layer_norm(x + h, (hidden,), w[f"{p}output.LayerNorm.weight"], w[f"{p}output.LayerNorm.bias"], 1e-12)
        layer += 1
    m = mask[..., None].to(x.dtype)
    pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return F.normalize(pooled.float(), dim=-1)


def batches(flat: Any, lengths: Any, size: int, device: str) -> list[tuple[Any, Any]]:
    """Padded [B, L] id and mask tensors, texts in length order (as Sentence-BERT batches them)."""
    import torch

    starts = torch.cumsum(lengths, 0) - lengths
    order = torch.argsort(lengths, descending=True).tolist()
    out = []
    for k in range(0, len(order), size):
        chunk = order[k : k + size]
        width = int(lengths[chunk[0]])
        ids = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, n in enumerate(chunk):
            s, ln = int(starts[n]), int(lengths[n])
            ids[row, :ln] = flat[s : s + ln].long()
            mask[row, :ln] = 1
        out.append((ids.to(device), mask.to(device)))
    return out


def run(bundle: Path, out: Path, batch: int, cpu_texts: int) -> None:
    import torch

    info = json.loads((bundle / "info.json").read_text())
    data = torch.load(bundle / "texts.pt")
    half = torch.load(bundle / "weights.pt")
    flat, lengths, reference = data["flat"], data["lengths"], data["reference"]
    results: dict[str, Any] = {"pack": info, "batch": batch, "date": datetime.now(UTC).isoformat(timespec="seconds")}
    results["cpu"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    results["load_average"] = os.getloadavg()
    gpu = torch.cuda.is_available()
    results["gpu"] = torch.cuda.get_device_name(0) if gpu else None
    configs = [("cpu", torch.float32)] + ([("cuda", torch.float32), ("cuda", torch.float16)] if gpu else [])
    first = int(lengths[:REFERENCE_TEXTS].sum())
    for device, dtype in configs:
        weights = {k: v.to(device=device, dtype=dtype) for k, v in half.items()}
        ref_batches = batches(flat[:first], lengths[:REFERENCE_TEXTS], REFERENCE_TEXTS, device)
        ids, mask = ref_batches[0]
        order = torch.argsort(lengths[:REFERENCE_TEXTS], descending=True)
        with torch.inference_mode():
            got = minilm(weights, ids, mask).cpu()
        cosine = float(torch.nn.functional.cosine_similarity(got, reference[order]).min())
        n = cpu_texts if device == "cpu" else len(lengths)
        work = batches(flat[: int(lengths[:n].sum())], lengths[:n], batch, device)
        with torch.inference_mode():
            minilm(weights, *work[0])  # warm-up (kernels, allocator)
            if device == "cuda":
                torch.cuda.synchronize()
            began = time.perf_counter()
            for ids, mask in work:
                minilm(weights, ids, mask)
            if device == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - began
        key = f"{device}-{str(dtype).removeprefix('torch.')}"
        results[key] = {"texts": n, "seconds": seconds, "texts_per_s": n / seconds, "min_cosine_vs_sbert": cosine}
        print(key, json.dumps(results[key]), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--items", type=int, default=20_000)
    r = sub.add_parser("run")
    r.add_argument("--bundle", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--batch", type=int, default=128, help="texts per batch (the sync's default batch size)")
    r.add_argument("--cpu-texts", type=int, default=2_000, help="texts timed on the CPU (it is slow)")
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.out, args.items)
    else:
        run(args.bundle, args.out, args.batch, args.cpu_texts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
