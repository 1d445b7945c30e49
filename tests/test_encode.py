"""Stage 3: the Arrow dataset, its manifest, and the length invariant across max_len values."""

import json

import pyarrow as pa
import pytest

from reasoning_sft.data.encoding import encode_records, id_dtype, token_totals
from reasoning_sft.data.template import IGNORE_INDEX, TEMPLATE_VERSION
from reasoning_sft.errors import UserError

MANIFEST_KEYS = {"tokenizer_fingerprint", "base_model", "template_version", "max_len", "rows", "total_tokens",
                 "trained_tokens", "longest", "id_dtype", "pad_token_id", "source"}


def load(encode_dir):
    import datasets

    ds = datasets.load_from_disk(str(encode_dir / "arrow_dataset"))
    manifest = json.loads((encode_dir / "manifest.json").read_text(encoding="utf-8"))
    return ds, manifest


def check_invariants(ds, manifest, max_len):
    """Every row fits max_len, length is len(input_ids), labels line up; manifest totals are the dataset's."""
    cols = ds.to_dict()
    total = trained = 0
    assert len(cols["input_ids"]) == manifest["rows"] > 0
    for ids, labels, n in zip(cols["input_ids"], cols["labels"], cols["length"]):
        assert n == len(ids) == len(labels) <= max_len
        assert labels[-1] == ids[-1] and labels[0] == IGNORE_INDEX
        total += n
        trained += sum(label != IGNORE_INDEX for label in labels)
    assert manifest["max_len"] == max_len
    assert (manifest["total_tokens"], manifest["trained_tokens"]) == (total, trained)
    assert manifest["longest"] == max(cols["length"]) <= max_len
    assert 0 < trained < total


def test_columns_and_compact_dtypes(encoded_dir, prepared_tokenizer):
    tok, _ = prepared_tokenizer
    ds, manifest = load(encoded_dir)
    assert ds.column_names == ["input_ids", "labels", "length"]
    schema = ds.data.schema
    assert schema.field("input_ids").type == pa.list_(pa.int16())
    assert schema.field("labels").type == pa.list_(pa.int16())
    assert schema.field("length").type == pa.int32()
    assert manifest["id_dtype"] == "int16" == id_dtype(len(tok))
    # every id really fits: the largest id (the pad) round-trips unchanged
    assert max(max(r) for r in ds["input_ids"]) < len(tok) <= 32767


def test_manifest(encoded_dir, filtered_dir, prepared_tokenizer):
    _, meta = prepared_tokenizer
    ds, manifest = load(encoded_dir)
    assert set(manifest) == MANIFEST_KEYS
    assert manifest["tokenizer_fingerprint"] == meta["fingerprint"]
    assert manifest["base_model"] == meta["base_model"]
    assert manifest["template_version"] == TEMPLATE_VERSION
    assert manifest["pad_token_id"] == meta["pad_token_id"]
    assert manifest["source"] == str((filtered_dir / "data.json").resolve())
    report = json.loads((filtered_dir / "filter_report.json").read_text(encoding="utf-8"))
    assert manifest["rows"] == report["kept"] == len(ds)
    assert manifest["total_tokens"] == report["tokens_after"]["total"]  # stage 2 measured exactly what stage 3 encodes
    assert manifest["longest"] == report["tokens_after"]["max"]
    assert (manifest["total_tokens"], manifest["trained_tokens"]) == token_totals(ds)
    check_invariants(ds, manifest, 256)
    assert sorted(p.name for p in encoded_dir.iterdir()) == ["arrow_dataset", "manifest.json"]
    assert sorted(p.name for p in encoded_dir.parent.iterdir()) == ["encoded"]


def _short_records(n):
    """Records short enough for a small max_len, so that every max_len keeps something."""
    return [{"id": f"short-{i}", "instruction": f"Return {i}.", "reasoning": f"The answer is {i}. " * (1 + i % 5),
             "intention": "Return it.", "code": f"def f():\n    return {i}"} for i in range(n)]


@pytest.mark.parametrize("max_len", [64, 128, 256])
def test_length_invariant_after_filter_and_encode(max_len, tmp_path, sample_records, tokenizer_dir):
    import encode_dataset
    import filter_data

    src = tmp_path / "raw.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in list(sample_records) + _short_records(12)), encoding="utf-8")
    filtered, encoded = tmp_path / "filtered", tmp_path / "encoded"
    assert filter_data.main(["--json", str(src), "--tokenizer", str(tokenizer_dir), "--out_dir", str(filtered),
                             "--max_len", str(max_len), "--no_plot"]) == 0
    assert encode_dataset.main(["--json", str(filtered / "data.json"), "--tokenizer", str(tokenizer_dir),
                                "--encode_dir", str(encoded), "--max_len", str(max_len), "--num_proc", "1"]) == 0
    ds, manifest = load(encoded)
    check_invariants(ds, manifest, max_len)
    report = json.loads((filtered / "filter_report.json").read_text(encoding="utf-8"))
    assert manifest["rows"] == report["kept"]
    assert report["tokens_after"]["max"] <= max_len
    if report["tokens_before"]["max"] > max_len:
        assert report["reasoning_truncated"] + report["drop_reasons"].get("too_long", 0) > 0


def test_encode_accepts_a_larger_max_len_than_filter(filtered_dir, tokenizer_dir, tmp_path):
    import encode_dataset

    out = tmp_path / "encoded"
    assert encode_dataset.main(["--json", str(filtered_dir / "data.json"), "--tokenizer", str(tokenizer_dir),
                                "--encode_dir", str(out), "--max_len", "300", "--num_proc", "1"]) == 0
    ds, manifest = load(out)
    check_invariants(ds, manifest, 300)


def test_num_proc_2_gives_the_identical_dataset(sample_records, prepared_tokenizer, monkeypatch):
    import datasets

    from reasoning_sft.data.records import validate

    seen = []
    real_map = datasets.Dataset.map

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("num_proc"))
        return real_map(self, *args, **kwargs)

    monkeypatch.setattr(datasets.Dataset, "map", spy)

    tok, _ = prepared_tokenizer
    base = [r for r in (validate(raw)[0] for raw in sample_records) if r is not None]
    records = []
    i = 0
    while len(records) < 4000:  # the encoder only forks workers from 4000 records (2000 per worker)
        r = base[i % len(base)]
        # shortened fields keep the test fast; the suffix makes every record distinct
        records.append(dict(r, instruction=f"{r['instruction'][:80]} (variant {i})", reasoning=r["reasoning"][:80],
                            intention=r["intention"][:40], code=r["code"][:80]))
        i += 1
    one = encode_records(records, tok, num_proc=1)
    two = encode_records(records, tok, num_proc=2)
    assert seen == [None, 2]  # the second run really used two worker processes
    assert len(one) == len(two) == len(records)
    assert one.features == two.features
    assert one.data.table.combine_chunks().equals(two.data.table.combine_chunks())
    # rows really are distinct and in input order
    assert one[0]["input_ids"] != one[len(base)]["input_ids"]
    assert one[len(base)]["length"] >= one[0]["length"]


def test_encode_without_filter_report_validates_records(tmp_path, tokenizer_dir, capsys):
    import encode_dataset

    good = _short_records(3)
    src = tmp_path / "data.json"
    src.write_text(json.dumps(good), encoding="utf-8")
    out = tmp_path / "encoded"
    args = ["--json", str(src), "--tokenizer", str(tokenizer_dir), "--encode_dir", str(out), "--max_len", "64",
            "--num_proc", "1"]
    assert encode_dataset.main(args) == 0
    assert "no filter_report.json" in capsys.readouterr().err
    assert load(out)[1]["rows"] == 3
    # an invalid record is refused, naming its index
    src.write_text(json.dumps(good + [{"instruction": "x", "reasoning": "y", "intention": "z"}]), encoding="utf-8")
    with pytest.raises(UserError, match="record 3 is invalid \\(missing_code\\)"):
        encode_dataset.main(args + ["--overwrite"])
    # records that were never fitted to max_len are refused, not silently over-long
    src.write_text(json.dumps(good), encoding="utf-8")
    with pytest.raises(UserError, match="longer than --max_len 16"):
        encode_dataset.main(args[:-4] + ["--max_len", "16", "--num_proc", "1", "--overwrite"])
    assert load(out)[1]["rows"] == 3  # the failed runs left the previous artifact intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json", "encoded"]


def test_id_dtype():
    assert id_dtype(1031) == "int16"
    assert id_dtype(32016 + 7) == "int16"  # CodeLlama + six tags + pad
    assert id_dtype(32767) == "int16"
    assert id_dtype(32768) == "int32"
    assert id_dtype(128256) == "int32"
