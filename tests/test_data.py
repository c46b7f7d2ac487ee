"""Tests for ko_hf.data: every local format on tiny fixtures built in tmp_path, splits, labels and bad inputs."""

import json
from collections import Counter
from pathlib import Path

import datasets
import pandas as pd
import pytest

from ko_hf.data import (
    DATASET_RECIPES,
    DatasetError,
    DatasetRecipe,
    detect_local_format,
    load_text_classification,
    read_text_robust,
    register_recipe,
    stratified_sample,
)

INTENTS = ("AddToPlaylist", "GetWeather", "PlayMusic")
SURROGATE_PIZZA = b"\xed\xa0\xbc\xed\xbd\x95"  # U+1F355 stored as UTF-8-encoded UTF-16 surrogates (as in Snips)


def make_rows(n_per_class=10, labels=("neg", "pos"), prefix="row"):
    return [{"text": f"{prefix} {label} example {i}", "label": label}
            for label in labels for i in range(n_per_class)]


def write_table(path: Path, rows, **renamed) -> Path:
    frame = pd.DataFrame(rows).rename(columns=renamed)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif suffix == ".json":
        frame.to_json(path, orient="records")
    elif suffix == ".parquet":
        frame.to_parquet(path)
    return path


def column(data, split, name):
    return list(data.dataset[split][name])


def check_schema(data, splits=("train", "validation", "test")):
    assert list(data.dataset) == list(splits)
    for ds in data.dataset.values():
        assert ds.column_names == ["text", "label"]
        assert isinstance(ds.features["label"], datasets.ClassLabel)
        assert ds.features["label"].names == data.label_names
        assert all(isinstance(t, str) and t for t in list(ds["text"]))
    assert data.id2label == dict(enumerate(data.label_names))
    assert data.label2id == {n: i for i, n in enumerate(data.label_names)}


# --------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def acl_imdb(tmp_path):
    root = tmp_path / "aclImdb"
    for split, n in (("train", 10), ("test", 4)):
        for lab, ratings in (("neg", (1, 2, 3, 4)), ("pos", (7, 8, 9, 10))):
            folder = root / split / lab
            folder.mkdir(parents=True)
            for i in range(n):
                (folder / f"{i}_{ratings[i % 4]}.txt").write_text(f"{split} {lab} review {i}<br />ok", "utf-8")
    (root / "train" / "unsup").mkdir()
    (root / "train" / "unsup" / "0_0.txt").write_text("unlabeled", "utf-8")
    (root / "train" / "labeledBow.feat").write_text("0:1", "utf-8")
    return root


@pytest.fixture
def snips_json(tmp_path):
    root = tmp_path / "nlu-benchmark" / "2017-06-custom-intent-engines"
    for intent in INTENTS:
        folder = root / intent
        folder.mkdir(parents=True)
        for kind, n in (("train", 10), ("validate", 3)):
            examples = [{"data": [{"text": f"{intent} {kind} "}, {"text": f"thing {i}", "entity": "x"}, {"text": " \n"}]}
                        for i in range(n)]
            name = f"train_{intent}_full.json" if kind == "train" else f"validate_{intent}.json"
            raw = json.dumps({intent: examples}, indent=1).encode("utf-8")
            if intent == "PlayMusic" and kind == "train":  # not strict UTF-8, like the real file
                raw = raw.replace(b"thing 0", b"thing " + SURROGATE_PIZZA)
            (folder / name).write_bytes(raw)
        (folder / f"train_{intent}.json").write_text(json.dumps({intent: []}), "utf-8")  # small variant: ignored
    return root


@pytest.fixture
def seq_in(tmp_path):
    root = tmp_path / "snips"
    for split, n in (("train", 6), ("valid", 2), ("test", 2)):
        folder = root / split
        folder.mkdir(parents=True)
        texts = [f"play {split} song {i} " for i in range(n)] + [f"weather in city {i}" for i in range(n)]
        labels = ["PlayMusic"] * n + ["GetWeather"] * n
        (folder / "seq.in").write_text("\n".join(texts) + "\n", "utf-8")
        (folder / "label").write_text("\n".join(labels) + "\n", "utf-8")
        (folder / "seq.out").write_text("\n".join("O" for _ in texts) + "\n", "utf-8")
    return root


# --------------------------------------------------------------------------------------------------- formats


def test_acl_imdb_tree(acl_imdb):
    assert detect_local_format(acl_imdb) == "aclImdb"
    data = load_text_classification(str(acl_imdb))
    check_schema(data)
    assert data.label_names == ["neg", "pos"]
    assert data.data_format == "aclImdb" and "Maas" in data.citation
    assert len(data.dataset["train"]) + len(data.dataset["validation"]) == 20  # unsup ignored
    assert len(data.dataset["test"]) == 8
    assert "train pos review 3<br />ok" in column(data, "train", "text") + column(data, "validation", "text")
    # the parent folder works too, and the recipe binding keeps the recipe's name and label names
    bound = load_text_classification(f"imdb={acl_imdb.parent}")
    assert bound.name == "imdb" and bound.label_names == ["neg", "pos"]
    assert column(bound, "test", "text") == column(data, "test", "text")


def test_snips_json_folder(snips_json):
    root = snips_json.parent.parent  # the repository root: the format is found below it
    assert detect_local_format(root) == "snips-json"
    data = load_text_classification(str(root))
    check_schema(data)
    assert data.label_names == sorted(INTENTS)
    assert len(data.dataset["train"]) + len(data.dataset["validation"]) == 30  # train_*_full only
    assert len(data.dataset["test"]) == 9  # validate_* -> test
    assert Counter(column(data, "test", "label")) == {0: 3, 1: 3, 2: 3}
    texts = column(data, "train", "text") + column(data, "validation", "text")
    assert "PlayMusic train thing \U0001F355" in texts  # pieces joined, stripped, surrogates repaired
    assert "Snips" in data.citation


def test_read_text_robust_replaces_invalid_bytes(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(b'{"PlayMusic": [{"data": [{"text": "caf\xe9 \xff song"}]}]}')
    text = read_text_robust(path)
    assert "\ufffd" in text and json.loads(text)["PlayMusic"][0]["data"][0]["text"].endswith(" song")
    (tmp_path / "ok.txt").write_bytes(b"\xef\xbb\xbfplain " + SURROGATE_PIZZA)
    assert read_text_robust(tmp_path / "ok.txt") == "plain \U0001F355"


def test_snips_json_with_invalid_byte_loads(snips_json):
    target = snips_json / "PlayMusic" / "validate_PlayMusic.json"
    target.write_bytes(target.read_bytes().replace(b"thing 1", b"thing \xff"))
    data = load_text_classification(str(snips_json))
    assert "PlayMusic validate thing \ufffd" in column(data, "test", "text")


def test_seq_in_layout(seq_in):
    assert detect_local_format(seq_in) == "seq.in"
    data = load_text_classification(str(seq_in))
    check_schema(data)
    assert [len(data.dataset[s]) for s in ("train", "validation", "test")] == [12, 4, 4]
    assert data.label_names == ["GetWeather", "PlayMusic"]
    assert data.dataset["train"][0] == {"text": "play train song 0", "label": 1}


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_table_files_in_a_folder(tmp_path, suffix):
    write_table(tmp_path / "d" / f"train{suffix}", make_rows(10, prefix='say "hi",\tthere'))
    write_table(tmp_path / "d" / f"dev{suffix}", make_rows(2, prefix="dev"))
    write_table(tmp_path / "d" / f"test{suffix}", make_rows(3, prefix="test"))
    data = load_text_classification(str(tmp_path / "d"))
    check_schema(data)
    assert [len(data.dataset[s]) for s in ("train", "validation", "test")] == [20, 4, 6]
    assert data.label_names == ["neg", "pos"]
    assert data.dataset["train"][0]["text"] == 'say "hi",\tthere neg example 0'


def test_json_lines_keep_strings_verbatim(tmp_path):
    # a string of digits is text: "007" stays "007", and string labels stay strings (sorted as strings)
    path = tmp_path / "codes.jsonl"
    path.write_text("".join(json.dumps({"text": f"{i:03d}", "label": str(i % 11)}) + "\n" for i in range(22)))
    data = load_text_classification(str(path))
    texts = column(data, "train", "text") + column(data, "validation", "text")
    assert sorted(texts) == [f"{i:03d}" for i in range(22)]
    assert data.label_names == sorted(str(i) for i in range(11))


def test_json_lines_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in make_rows(5)).encode())
    assert load_text_classification(str(path)).label_names == ["neg", "pos"]


@pytest.mark.parametrize("shape", ["records", "indented", "field", "columns", "lines"])
def test_json_document_shapes(tmp_path, shape):
    rows = make_rows(5)
    document = {"records": lambda: json.dumps(rows), "indented": lambda: json.dumps(rows, indent=2),
                "field": lambda: json.dumps({"data": rows}),
                "columns": lambda: json.dumps({k: [r[k] for r in rows] for k in ("text", "label")}),
                "lines": lambda: "".join(json.dumps(r) + "\n" for r in rows)}[shape]()
    (tmp_path / "rows.json").write_text(document)
    data = load_text_classification(str(tmp_path / "rows.json"))
    assert data.label_names == ["neg", "pos"]
    assert sorted(column(data, "train", "text") + column(data, "validation", "text")) == sorted(r["text"] for r in rows)


def test_json_lines_in_a_json_file_with_snips_surrogate_pairs(tmp_path):
    # Snips stores emoji as UTF-8-encoded surrogate pairs: strict UTF-8 readers refuse the file
    (tmp_path / "rows.json").write_bytes(b"".join(
        b'{"text": "pizza %d ' % i + SURROGATE_PIZZA + b'", "label": "%s"}\n' % (b"food" if i % 2 else b"music")
        for i in range(10)))
    data = load_text_classification(str(tmp_path / "rows.json"))
    assert data.label_names == ["food", "music"]
    texts = column(data, "train", "text") + column(data, "validation", "text")
    assert sorted(texts) == sorted(f"pizza {i} \U0001F355" for i in range(10))


def test_json_file_that_is_neither_a_document_nor_lines_names_the_line(tmp_path):
    (tmp_path / "bad.json").write_text('{"text": "a", "label": "x"}\n{"text": oops}\n')
    with pytest.raises(DatasetError, match=r"bad.json: neither one JSON document nor JSON lines \(line 2"):
        load_text_classification(str(tmp_path / "bad.json"))


def test_mixed_label_types_in_one_file_become_strings(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps({"text": f"m{i}", "label": [0, "0", "x"][i % 3]}) + "\n" for i in range(30)))
    assert load_text_classification(str(path)).label_names == ["0", "x"]


def test_csv_column_types_come_from_the_whole_file(tmp_path):
    # datasets reads CSV in chunks of 10,000 rows; a label that is not a number after them must not fail the read
    path = tmp_path / "late.csv"
    path.write_text("text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(10_050)) + "tz,other\ntq,other\n")
    assert load_text_classification(str(path)).label_names == ["0", "1", "other"]


def test_csv_only_an_empty_field_is_missing(tmp_path):
    path = tmp_path / "na.csv"
    path.write_text("text,label\nNA,a\nnull,b\nNone,a\n,b\nx,\nn/a,b\n")
    data = load_text_classification(str(path), validation_fraction=0.2)
    assert sorted(column(data, "train", "text") + column(data, "validation", "text")) == ["NA", "None", "n/a", "null"]


def test_an_empty_parquet_split_is_reported_empty(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_table(tmp_path / "p" / "train.parquet", make_rows(4))
    pq.write_table(pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.string())}),
                   tmp_path / "p" / "test.parquet")
    with pytest.raises(DatasetError, match="split 'test' .* is empty"):
        load_text_classification(str(tmp_path / "p"))


def test_broken_files_name_the_file(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "train.jsonl").write_text('{"text": "a", "label": 1}\n{oops\n')
    with pytest.raises(DatasetError, match=r"cannot read .*train\.jsonl: \w+: "):
        load_text_classification(str(tmp_path / "b"))
    (tmp_path / "b" / "train.jsonl").unlink()
    (tmp_path / "b" / "train.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DatasetError, match=r"cannot read .*train\.parquet: ArrowInvalid: .*[Pp]arquet"):
        load_text_classification(str(tmp_path / "b"))


def test_reading_files_leaves_no_cache_and_no_progress_bar(tmp_path, monkeypatch, capfd):
    cache = tmp_path / "hf-datasets-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    was_disabled = datasets.utils.are_progress_bars_disabled()  # the CLI turns them off for the whole process
    datasets.enable_progress_bars()
    try:
        for suffix in (".csv", ".jsonl", ".parquet"):
            write_table(tmp_path / suffix[1:] / f"train{suffix}", make_rows(5))
            load_text_classification(str(tmp_path / suffix[1:]))
        assert not datasets.utils.are_progress_bars_disabled()  # the global setting is left as it was
    finally:
        if was_disabled:
            datasets.disable_progress_bars()
    assert not cache.exists() or not any(cache.iterdir())
    err = capfd.readouterr().err
    assert "Generating" not in err and "examples/s" not in err, err


@pytest.mark.parametrize("spec", ["someone/bad--name", "someone/name.", "someone/" + "x" * 100])
def test_an_invalid_hub_id_is_not_sent_to_the_hub(spec):
    # huggingface_hub's validate_repo_id decides what a Hub id is ("--", a trailing ".", more than 96 characters:
    # not one), so such a name is reported as a missing path instead of a dataset missing from the cache
    with pytest.raises(DatasetError, match="dataset path does not exist"):
        load_text_classification(spec)


def test_single_file_is_train_and_columns_are_detected(tmp_path):
    path = write_table(tmp_path / "intents.csv", make_rows(10, labels=("b", "a")), text="sentence", label="intent")
    data = load_text_classification(str(path))
    check_schema(data, ("train", "validation"))
    assert data.label_names == ["a", "b"]  # sorted
    assert (len(data.dataset["train"]), len(data.dataset["validation"])) == (18, 2)


def test_explicit_columns_override_detection(tmp_path):
    rows = [{"text": "ignore me", "label": 0, "utt": f"u{i}", "y": ["x", "y"][i % 2]} for i in range(20)]
    data = load_text_classification(str(write_table(tmp_path / "a.parquet", rows)), text_column="utt",
                                    label_column="y")
    assert data.label_names == ["x", "y"]
    assert set(column(data, "train", "text")) <= {f"u{i}" for i in range(20)}


def test_split_column_and_hub_style_file_names(tmp_path):
    rows = [dict(r, split=s) for s, n in (("train", 8), ("validation", 2), ("test", 2)) for r in make_rows(n)]
    data = load_text_classification(str(write_table(tmp_path / "all.jsonl", rows)))
    assert [len(data.dataset[s]) for s in ("train", "validation", "test")] == [16, 4, 4]
    write_table(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet", make_rows(5))
    write_table(tmp_path / "hub" / "data" / "test-00000-of-00001.parquet", make_rows(2))
    data = load_text_classification(str(tmp_path / "hub"))
    assert list(data.dataset) == ["train", "validation", "test"] and len(data.dataset["test"]) == 4


def test_integer_labels_keep_recipe_names(tmp_path):
    rows = [{"text": f"t{i}", "label": i % 2, "rating": 1} for i in range(20)]
    write_table(tmp_path / "imdb" / "train.parquet", rows)
    write_table(tmp_path / "imdb" / "test.parquet", rows[:6])
    plain = load_text_classification(str(tmp_path / "imdb"))
    assert plain.label_names == ["0", "1"]
    bound = load_text_classification(f"imdb={tmp_path / 'imdb'}")
    assert bound.label_names == ["neg", "pos"] and bound.name == "imdb" and "Maas" in bound.citation
    assert column(bound, "test", "label") == [0, 1, 0, 1, 0, 1]


def test_demo_set():
    data = load_text_classification("demo")
    check_schema(data)
    assert data.num_labels == 5 and data.source.startswith("package:")
    assert [len(data.dataset[s]) for s in ("train", "validation", "test")] == [210, 45, 45]
    assert set(Counter(column(data, "train", "label")).values()) == {42}
    assert set(Counter(column(data, "test", "label")).values()) == {9}
    all_texts = [t for split in data.dataset for t in column(data, split, "text")]
    assert len(set(all_texts)) == 300


# --------------------------------------------------------------------------------------------------- splits


def carve(tmp_path, seed, **kwargs):
    path = tmp_path / "c.csv"
    if not path.exists():
        write_table(path, make_rows(40, labels=("a", "b")) + make_rows(20, labels=("c",)))
        write_table(tmp_path / "c" / "train.csv", make_rows(40, labels=("a", "b")) + make_rows(20, labels=("c",)))
        write_table(tmp_path / "c" / "test.csv", make_rows(3, labels=("a", "b", "c"), prefix="t"))
    return load_text_classification(str(tmp_path / "c"), seed=seed, **kwargs)


def test_validation_is_carved_stratified_and_reproducible(tmp_path):
    first, again, other = carve(tmp_path, 1), carve(tmp_path, 1), carve(tmp_path, 2)
    val = column(first, "validation", "text")
    assert Counter(column(first, "validation", "label")) == {0: 4, 1: 4, 2: 2}  # 10% of 40/40/20
    assert len(first.dataset["train"]) == 90
    assert not set(val) & set(column(first, "train", "text"))
    assert val == column(again, "validation", "text")
    assert val != column(other, "validation", "text")
    assert column(first, "test", "text") == column(other, "test", "text")  # test untouched
    assert len(carve(tmp_path, 1, validation_fraction=0.25).dataset["validation"]) == 25


def test_max_samples_are_stratified_subsets(tmp_path):
    data = carve(tmp_path, 3, max_train_samples=20, max_eval_samples=3)
    assert Counter(column(data, "train", "label")) == {0: 8, 1: 8, 2: 4}
    assert Counter(column(data, "validation", "label")) == {0: 1, 1: 1, 2: 1}
    assert len(data.dataset["test"]) == 3
    assert carve(tmp_path, 3, max_train_samples=10_000).dataset["train"].num_rows == 90


def test_stratified_sample_keeps_each_class():
    labels = ["a"] * 98 + ["b", "c"]
    assert stratified_sample(labels, 10, seed=0) == stratified_sample(labels, 10, seed=0)
    picked = [labels[i] for i in stratified_sample(labels, 10, seed=0, keep_each_class=True)]
    assert Counter(picked) == {"a": 8, "b": 1, "c": 1}
    assert stratified_sample(["a", "b"], 2, seed=0, leave_one=True) == []


def test_unseen_eval_labels(tmp_path):
    write_table(tmp_path / "u" / "train.csv", make_rows(5, labels=("a", "b")))
    write_table(tmp_path / "u" / "test.csv", make_rows(2, labels=("a", "b", "zz")))
    with pytest.raises(DatasetError, match=r"test labels never seen in train: \['zz'\]"):
        load_text_classification(str(tmp_path / "u"))
    data = load_text_classification(str(tmp_path / "u"), drop_unseen_eval_labels=True)
    assert data.label_names == ["a", "b"] and len(data.dataset["test"]) == 4


# --------------------------------------------------------------------------------------------------- bad input


def test_unknown_name_lists_known_names():
    with pytest.raises(DatasetError, match="unknown dataset 'imbd'.*demo, imdb, mrpc, snips"):
        load_text_classification("imbd")
    with pytest.raises(DatasetError, match="unknown dataset recipe 'foo'"):
        load_text_classification("foo=/tmp")


@pytest.mark.parametrize("spec", ["./no/such/dir", "/no/such/file.csv", "imdb=/no/such/aclImdb", "data.parquet"])
def test_missing_path(spec):
    with pytest.raises(DatasetError, match="path does not exist"):
        load_text_classification(spec)


def test_missing_column_lists_columns(tmp_path):
    path = write_table(tmp_path / "x.csv", make_rows(3), text="body", label="y")
    with pytest.raises(DatasetError, match=r"no text column found.*columns found: \['body', 'y'\]"):
        load_text_classification(str(path))
    with pytest.raises(DatasetError, match=r"label column 'nope' not found; columns found: \['body', 'y'\]"):
        load_text_classification(str(path), text_column="body", label_column="nope")


def test_empty_split(tmp_path):
    write_table(tmp_path / "e" / "train.csv", make_rows(3))
    (tmp_path / "e" / "test.csv").write_text("text,label\n", "utf-8")
    with pytest.raises(DatasetError, match="split 'test' .* is empty"):
        load_text_classification(str(tmp_path / "e"))


def test_unsupported_file_type(tmp_path):
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    with pytest.raises(DatasetError, match=r"unsupported file type '\.xlsx'.*\.csv, \.tsv"):
        load_text_classification(str(tmp_path / "data.xlsx"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no supported data found"):
        load_text_classification(str(tmp_path / "empty"))


def test_hub_id_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DatasetError, match=r"'someone/nonexistent-dataset' is not in the local cache and "
                                           r"HF_DATASETS_OFFLINE=1 is set \(offline mode\)"):
        load_text_classification("someone/nonexistent-dataset")


def test_bad_arguments(tmp_path):
    with pytest.raises(DatasetError, match="validation_fraction"):
        load_text_classification("demo", validation_fraction=1.5)
    with pytest.raises(DatasetError, match="max_train_samples"):
        load_text_classification("demo", max_train_samples=0)
    with pytest.raises(DatasetError, match="already registered"):
        register_recipe(DatasetRecipe(name="demo", description="dup"))


def test_register_recipe_for_a_local_dataset(tmp_path):
    write_table(tmp_path / "mine" / "train.jsonl", [{"q": f"q{i}", "y": i % 3} for i in range(30)])
    recipe = DatasetRecipe(name="mine-test", description="test", text_column="q", label_column="y",
                           label_names=("x", "y", "z"))
    register_recipe(recipe)
    try:
        data = load_text_classification(f"mine-test={tmp_path / 'mine'}")
        assert data.label_names == ["x", "y", "z"] and data.name == "mine-test"
        with pytest.raises(DatasetError, match="pass mine-test=/path/to/data"):
            load_text_classification("mine-test")
    finally:
        DATASET_RECIPES.pop("mine-test")


# --------------------------------------------------------------------------------------------------- real data


SHARED = Path(__file__).parents[1] / ".." / "shared" / "data"


@pytest.mark.integration
@pytest.mark.parametrize("spec, sizes, n_labels", [
    ("snips/slotgated-slu", (13_084, 700, 700), 7),
    ("snips/sonos-nlu-benchmark", (12_406, 1_378, 700), 7),
    ("imdb", (22_500, 2_500, 25_000), 2),
])
def test_real_shared_data(spec, sizes, n_labels):
    path = SHARED / spec
    if not path.exists():
        pytest.skip(f"{path} not present")
    data = load_text_classification(str(path.resolve()))
    check_schema(data)
    assert tuple(len(data.dataset[s]) for s in ("train", "validation", "test")) == sizes
    assert data.num_labels == n_labels
    if spec == "imdb":  # 25k/25k: the carved validation comes out of the 25k train reviews
        assert sum(sizes[:2]) == 25_000
        assert load_text_classification(f"imdb={path.resolve()}").label_names == ["neg", "pos"]


def test_single_class_is_an_error(tmp_path):
    path = write_table(tmp_path / "one.csv", make_rows(6, labels=("only",)))
    with pytest.raises(DatasetError, match=r"has a single label \('only' in column 'label'\); a classifier needs "
                                           r"at least 2 classes"):
        load_text_classification(str(path))


def test_all_empty_labels_get_their_own_message(tmp_path):
    path = tmp_path / "nolabels.csv"
    path.write_text("text,label\nplay a song,\nrain today,\nbook a table,\n")
    with pytest.raises(DatasetError, match=r"every one of its 3 row\(s\) has an empty label column 'label'") as err:
        load_text_classification(str(path))
    assert "is empty" not in str(err.value)


def test_column_messages_name_the_flags(tmp_path):
    path = write_table(tmp_path / "x.csv", make_rows(3), text="body", label="y")
    with pytest.raises(DatasetError, match=r"--text-column COLUMN \(text_column: COLUMN in a YAML config\)"):
        load_text_classification(str(path))
    with pytest.raises(DatasetError, match=r"--label-column COLUMN"):
        load_text_classification(str(path), text_column="body")


def test_unseen_label_message_names_real_settings(tmp_path):
    write_table(tmp_path / "u" / "train.csv", make_rows(5, labels=("a", "b")))
    write_table(tmp_path / "u" / "test.csv", make_rows(2, labels=("a", "zz")))
    with pytest.raises(DatasetError, match=r"drop_unseen_eval_labels: true in a YAML config \(ko-finetune: --set "
                                           r"drop_unseen_eval_labels=true\)") as err:
        load_text_classification(str(tmp_path / "u"))
    assert "--drop-unseen-eval-labels" not in str(err.value)


# --------------------------------------------------------------------------------------------------- sentence pairs


def pair_rows(n_per_class=6):
    """Premise / hypothesis pairs whose label depends on both sentences (an NLI-style toy task)."""
    rows = []
    for i in range(n_per_class):
        rows.append({"premise": f"a cat sits {i}", "hypothesis": f"a cat sits {i}", "label": "entailment"})
        rows.append({"premise": f"a dog runs {i}", "hypothesis": f"no dog runs {i}", "label": "contradiction"})
    return rows


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_two_text_columns_are_a_sentence_pair(tmp_path, suffix):
    path = write_table(tmp_path / f"nli{suffix}", pair_rows())
    data = load_text_classification(str(path), text_column=["premise", "hypothesis"], validation_fraction=0.25)
    assert data.text_columns == ("premise", "hypothesis")
    for split in ("train", "validation"):
        assert data.dataset[split].column_names == ["text", "text_pair", "label"]
    first = data.dataset["train"][0]
    assert (first["text"].split()[:3], first["text_pair"].split()[-3:-1]) in (
        (["a", "cat", "sits"], ["cat", "sits"]), (["a", "dog", "runs"], ["dog", "runs"]))
    pairs = {(r["premise"], r["hypothesis"]) for r in pair_rows()}
    for split in ("train", "validation"):  # each pair stays together, in order
        assert set(zip(column(data, split, "text"), column(data, split, "text_pair"))) <= pairs
    assert data.label_names == ["contradiction", "entailment"]


def test_one_text_column_keeps_the_single_text_schema(tmp_path):
    path = write_table(tmp_path / "one.csv", make_rows(5))
    data = load_text_classification(str(path))
    assert data.text_columns == ("text",)
    assert load_text_classification(str(path), text_column=["text"]).text_columns == ("text",)
    check_schema(data, ("train", "validation"))


def test_a_pair_row_missing_either_sentence_is_dropped(tmp_path):
    rows = pair_rows() + [{"premise": "lonely premise", "hypothesis": None, "label": "entailment"}]
    data = load_text_classification(str(write_table(tmp_path / "p.jsonl", rows)),
                                    text_column=["premise", "hypothesis"], validation_fraction=0.25)
    assert "lonely premise" not in column(data, "train", "text") + column(data, "validation", "text")


@pytest.mark.parametrize("columns, message", [
    (["premise", "hypothesis", "label2"], r"text_column takes one column, or two for a sentence pair.*3"),
    (["premise", "premise"], r"the same column twice"),
    ([], r"text_column takes one column, or two"),
    (["premise", "nope"], r"text column 'nope' not found; columns found"),
    (["premise", "label"], r"text and label column are the same \('label'\)"),
])
def test_bad_text_columns_are_errors(tmp_path, columns, message):
    path = write_table(tmp_path / "p.csv", [{**r, "label2": r["label"]} for r in pair_rows()])
    with pytest.raises(DatasetError, match=message):
        load_text_classification(str(path), text_column=columns)


def test_a_pair_recipe_reads_its_local_copy(tmp_path):
    folder = tmp_path / "mrpc"
    write_table(folder / "train.jsonl", [{"sentence1": r["premise"], "sentence2": r["hypothesis"], "idx": i,
                                          "label": int(r["label"] == "entailment")}
                                         for i, r in enumerate(pair_rows(8))])
    write_table(folder / "validation.jsonl", [{"sentence1": "x y", "sentence2": "x y", "idx": 0, "label": 1},
                                              {"sentence1": "x y", "sentence2": "z w", "idx": 1, "label": 0}])
    write_table(folder / "test.jsonl", [{"sentence1": "q", "sentence2": "q", "idx": 0, "label": 1},
                                        {"sentence1": "q", "sentence2": "r", "idx": 1, "label": 0}])
    recipe = DATASET_RECIPES["mrpc"]
    assert recipe.hub_id and recipe.text_column == ("sentence1", "sentence2")
    data = load_text_classification(f"mrpc={folder}")
    assert data.name == "mrpc" and data.text_columns == ("sentence1", "sentence2")
    assert data.label_names == list(recipe.label_names) and data.citation == recipe.citation
    # GLUE's validation split is the held-out test (its test labels are hidden); validation is carved from train
    assert len(data.dataset["train"]) + len(data.dataset["validation"]) == 16
    assert data.dataset["test"][1] == {"text": "x y", "text_pair": "z w", "label": 0}
    assert "q" not in column(data, "test", "text")
    renamed = tmp_path / "renamed.jsonl"
    write_table(renamed, [{"a": r["premise"], "b": r["hypothesis"], "label": r["label"]} for r in pair_rows()])
    with pytest.raises(DatasetError, match=r"sentence pair \('sentence1', 'sentence2'\).*--text-column A "
                                           r"--text-column B"):
        load_text_classification(f"mrpc={renamed}")


# --------------------------------------------------------------------------------------------------- subsets, patterns


def test_a_train_subset_of_one_class_is_an_error_naming_what_works(tmp_path):
    path = write_table(tmp_path / "three.csv", make_rows(8, labels=("a", "b", "c")))
    with pytest.raises(DatasetError, match=r"max_train_samples=1 leaves a train split of a single class "
                                           r"\('\w'\).*use max_train_samples=3 or more \(every one of the 3 "
                                           r"classes"):
        load_text_classification(str(path), max_train_samples=1)
    assert load_text_classification(str(path), max_train_samples=3).dataset["train"].unique("label") == [0, 1, 2]


def test_a_file_name_with_glob_characters_is_read_literally(tmp_path):
    folder = tmp_path / "d"
    literal = write_table(folder / "ds[a].csv", make_rows(5, prefix="bracket"))
    write_table(folder / "dsa.csv", make_rows(5, prefix="other"))
    star = write_table(folder / "ds*.csv", make_rows(4, prefix="star"))
    texts = lambda data: column(data, "train", "text") + column(data, "validation", "text")  # noqa: E731
    assert {t.split()[0] for t in texts(load_text_classification(str(literal)))} == {"bracket"}
    assert {t.split()[0] for t in texts(load_text_classification(str(star)))} == {"star"}


def test_a_glob_pattern_reads_every_file_it_matches(tmp_path):
    folder = tmp_path / "parts"
    write_table(folder / "part1.csv", make_rows(4, prefix="one"))
    write_table(folder / "part2.csv", make_rows(4, prefix="two"))
    write_table(folder / "other.jsonl", make_rows(4, prefix="nope"))
    data = load_text_classification(str(folder / "part*.csv"))
    texts = column(data, "train", "text") + column(data, "validation", "text")
    assert len(texts) == 16 and {t.split()[0] for t in texts} == {"one", "two"}
    assert data.source == str(folder / "part*.csv")
    split_files = tmp_path / "splits"
    write_table(split_files / "my_train.csv", make_rows(4))
    write_table(split_files / "my_test.csv", make_rows(2))
    assert list(load_text_classification(str(split_files / "my_*.csv")).dataset) == ["train", "validation", "test"]
    with pytest.raises(DatasetError, match=r"dataset path does not exist.*no file matches it as a pattern"):
        load_text_classification(str(folder / "nothing*.csv"))


# --------------------------------------------------------------------------------------------------- broken CSV


@pytest.mark.parametrize("text, line, what", [
    ('text,label\nhello,a\n"unterminated quote,b\nfoo,a\nbar,b\n', 3, "never closed"),
    ('text,label\nhello,a\n"quoted" then more,b\nfoo,a\n', 3, "expected after"),
    ('text,label\nhello,a\nfoo,b,extra\nbar,a\n', 3, "3 field(s) where the header (line 1) has 2"),
    ('text,label\nhello,a\nno label here\nbar,b\n', 3, "1 field(s) where the header (line 1) has 2"),
    ('text,label\nhello world,a\n"stray quote,a\nfoo,b\nbar,a\nbaz",z\n', 3, "lines that read as rows"),
])
def test_a_csv_that_does_not_parse_cleanly_names_the_file_and_line(tmp_path, text, line, what):
    path = tmp_path / "ragged.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError) as err:
        load_text_classification(str(path))
    message = str(err.value)
    assert f"{path}, line {line}:" in message and what in message, message
    assert "single label" not in message


def test_a_tsv_is_checked_with_its_own_delimiter(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("text\tlabel\nhello, world\ta\nfoo\tb\tc\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"t\.tsv, line 3: 3 field\(s\)"):
        load_text_classification(str(path))


def test_a_quoted_field_over_several_lines_is_still_read(tmp_path):
    path = tmp_path / "multi.csv"
    rows = [f'"review {i}, part one\nand part two",{"pos" if i % 2 else "neg"}' for i in range(8)]
    path.write_text("text,label\n" + "\n".join(rows) + "\n\n", encoding="utf-8")
    data = load_text_classification(str(path))
    assert "review 0, part one\nand part two" in column(data, "train", "text") + column(data, "validation", "text")
