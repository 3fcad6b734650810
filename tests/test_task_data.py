"""Task data readers: labelled sentences from CSV/TSV, tagged sentences from CoNLL-U."""

import collections
import gzip
import os

import numpy as np
import pytest

from conftest import SHARED_DATA
from jaxlm.data import conllu, labelled_text, text_files
from jaxlm.data.labelled_text import Example, LabelSet


def write(folder, name: str, text: str) -> str:
  path = os.path.join(str(folder), name)
  with open(path, "w", encoding="utf-8", newline="") as handle:
    handle.write(text)
  return path


# --- labelled_text ---------------------------------------------------------------------------------------------

RUCOLA_LIKE = ('id,sentence,acceptable,error_type\n'
               '0,Иван вчера не позвонил.,1,0\n'
               '1,"Вдруг, тихо ""так"", поехала.",0,Syntax\n'
               '2,"Две\nстроки.",1,0\n'
               '3,Последнее.,0,Semantics\n')


def test_csv_with_quoted_commas_quotes_and_newlines(tmp_path):
  path = write(tmp_path, "train.csv", RUCOLA_LIKE)
  examples = labelled_text.read_labelled_text(path, text_column="sentence", label_column="acceptable",
                                              id_column="id")
  assert examples == [
      Example("0", "Иван вчера не позвонил.", "1", 2),
      Example("1", 'Вдруг, тихо "так", поехала.', "0", 3),
      Example("2", "Две\nстроки.", "1", 4),
      Example("3", "Последнее.", "0", 6),  # the quoted newline moved it a line down
  ]


def test_tsv_is_read_unquoted_and_keeps_text_verbatim(tmp_path):
  path = write(tmp_path, "dev.tsv", 'sentence\tlabel\n"quoted" start , ok \t1\nit \'s bad \t0\n\n')
  examples = labelled_text.read_labelled_text(path, text_column="sentence", label_column="label")
  assert examples == [Example("0", '"quoted" start , ok ', "1", 2), Example("1", "it 's bad ", "0", 3)]


def test_unlabelled_file_and_explicit_delimiter_and_gzip(tmp_path):
  path = os.path.join(tmp_path, "test.txt.gz")
  with gzip.open(path, "wt", encoding="utf-8") as handle:
    handle.write("index;sentence\n7;a b\n9;c\n")
  examples = labelled_text.read_labelled_text(path, text_column="sentence", id_column="index", delimiter=";")
  assert [(example.id, example.text, example.label) for example in examples] == [("7", "a b", None), ("9", "c", None)]


@pytest.mark.parametrize("text, keywords, match", [
    ("id,sentence,label\n0,a,1\n", {"text_column": "text"}, r"no text column 'text'.*\['id', 'sentence', 'label'\]"),
    ("id,sentence\n0,a\n", {"label_column": "acceptable"}, r"no label column 'acceptable'.*\['id', 'sentence'\]"),
    ("id,sentence,label\n0,a,1\n1,  ,0\n", {}, r"line 3: empty text in column 'sentence'"),
    ("id,sentence,label\n0,a,1\n1,b,\n", {}, r"line 3: no label in column 'label'.*label_column=None"),
    ("id,sentence,label\n0,a,1\n1,b\n", {}, r"line 3: 2 fields where the header has 3"),
    ("id,sentence,label\n5,a,1\n5,b,0\n", {"id_column": "id"}, r"line 3: id '5' repeats the id of line 2"),
    ("id,sentence,label\n", {}, r"header but no data rows"),
    ('id,sentence,label\n0,"a"b,1\n', {}, r"line 2: malformed CSV.*quoting"),
])
def test_labelled_text_errors_name_file_line_and_fix(tmp_path, text, keywords, match):
  path = write(tmp_path, "bad.csv", text)
  arguments = {"text_column": "sentence", "label_column": "label", **keywords}
  with pytest.raises(text_files.DataError, match=match) as raised:
    labelled_text.read_labelled_text(path, **arguments)
  assert path in str(raised.value)


def test_missing_file_and_unknown_extension(tmp_path):
  with pytest.raises(text_files.DataError, match=r"missing\.csv not found"):
    labelled_text.read_labelled_text(os.path.join(tmp_path, "missing.csv"), text_column="sentence")
  path = write(tmp_path, "data.txt", "sentence\na\n")
  with pytest.raises(text_files.DataError, match=r"delimiter"):
    labelled_text.read_labelled_text(path, text_column="sentence")


def test_tab_inside_a_tsv_sentence_is_an_error(tmp_path):
  path = write(tmp_path, "train.tsv", "sentence\tlabel\na\tb\t1\n")
  with pytest.raises(text_files.DataError, match=r"line 2: 3 fields.*tab inside a sentence"):
    labelled_text.read_labelled_text(path, text_column="sentence", label_column="label")


def test_label_set_sorts_numeric_labels_numerically():
  assert LabelSet(["1", "0", "1"]).labels == ("0", "1")
  assert LabelSet(["10", "2", "-1"]).labels == ("-1", "2", "10")  # not the string order "-1", "10", "2"
  assert LabelSet(["pos", "neg", "10"]).labels == ("10", "neg", "pos")  # not all numbers: string order
  label_set = LabelSet(["1", "0"])
  assert (label_set.encode("0", "f", 1), label_set.encode("1", "f", 1), label_set.decode(1)) == (0, 1, "1")


def test_label_set_refuses_unknown_and_missing_labels():
  train = [Example("0", "a", "neg", 2), Example("1", "b", "pos", 3)]
  label_set = LabelSet.from_examples(train, "train.csv")
  dev = [Example("0", "c", "pos", 2), Example("1", "d", "neutral", 3)]
  with pytest.raises(text_files.DataError, match=r"dev\.csv line 3: label 'neutral'.*\['neg', 'pos'\]"):
    label_set.encode_examples(dev, "dev.csv")
  np.testing.assert_array_equal(label_set.encode_examples(train, "train.csv"), [0, 1])
  with pytest.raises(text_files.DataError, match=r"test\.csv line 4: the example has no label"):
    label_set.encode(None, "test.csv", 4)
  with pytest.raises(text_files.DataError, match=r"train\.csv line 3: a training example has no label"):
    LabelSet.from_examples([train[0], Example("1", "b", None, 3)], "train.csv")
  with pytest.raises(text_files.DataError, match=r"at least two"):
    LabelSet.from_examples([train[0]], "train.csv")


def shared(*parts):
  path = os.path.join(SHARED_DATA, *parts)
  if not os.path.exists(path):
    pytest.skip(f"{path} is absent (the staged datasets live in ../shared/data beside the repository)")
  return path


def test_real_rucola_and_sst2_parse_with_documented_counts():
  rucola = shared("rucola")
  read = lambda name, **labels: labelled_text.read_labelled_text(  # noqa: E731
      os.path.join(rucola, name), text_column="sentence", id_column="id", **labels)
  train = read("in_domain_train.csv", label_column="acceptable")
  counts = {name: len(read(name, label_column="acceptable")) for name in ("in_domain_dev.csv", "out_of_domain_dev.csv")}
  assert (len(train), counts) == (7869, {"in_domain_dev.csv": 983, "out_of_domain_dev.csv": 1804})
  assert collections.Counter(example.label for example in train) == {"1": 5864, "0": 2005}
  assert LabelSet.from_examples(train, "in_domain_train.csv").labels == ("0", "1")
  assert len(read("test.csv")) == 2789

  sst2 = shared("sst2")
  read = lambda name, **columns: labelled_text.read_labelled_text(  # noqa: E731
      os.path.join(sst2, name), text_column="sentence", **columns)
  train = read("train.tsv", label_column="label")
  assert (len(train), len(read("dev.tsv", label_column="label"))) == (67349, 872)
  assert collections.Counter(example.label for example in train) == {"1": 37569, "0": 29780}
  test = read("test.tsv", id_column="index")
  assert (len(test), test[0].id, test[-1].label) == (1821, "0", None)


# --- conllu ----------------------------------------------------------------------------------------------------

def token(word_id, form, upos):
  return "\t".join([str(word_id), form, form.lower(), upos, "_", "_", "0", "root", "_", "_"]) + "\n"


def test_conllu_sentences_skip_comments_multiword_tokens_and_empty_nodes(tmp_path):
  text = ("# newdoc id = d1\n# sent_id = s1\n# text = Снова дозу\n"
          + token(1, "Снова", "ADV") + token(2, "дозу", "NOUN") + "\n"
          + "# sent_id = s2\n" + token("1-2", "Del", "_") + token(1, "De", "ADP") + token(2, "el", "DET")
          + token("2.1", "ghost", "VERB") + token(3, "gato", "NOUN") + "\n\n"  # two blank lines: no empty sentence
          + token(1, "Конец", "NOUN"))  # no sent_id and no final blank line
  path = write(tmp_path, "x.conllu", text)
  assert conllu.read_conllu(path) == [
      conllu.Sentence(("Снова", "дозу"), ("ADV", "NOUN"), "s1", 4),
      conllu.Sentence(("De", "el", "gato"), ("ADP", "DET", "NOUN"), "s2", 9),
      conllu.Sentence(("Конец",), ("NOUN",), "2", 15),
  ]


@pytest.mark.parametrize("body, match", [
    (token(1, "a", "X") + "2\tb\tb\tX\n", r"line 2: 4 tab-separated fields"),
    (token(1, "a", "X") + token(1, "b", "X").replace("\t", " ", 1),
     r"line 2: 9 tab-separated fields.*spaces in place of tabs"),
    (token(1, "a", "X") + token("x", "b", "X"), r"line 2: word id 'x' is not an integer"),
    (token(1, "a", "X") + token(3, "b", "X"), r"line 2: word id 3 where 2 was expected"),
    (token(1, "a", "X") + token(1, "b", "X"), r"line 2: word id 1 where 2 was expected.*blank line"),
    (token(2, "a", "X"), r"line 1: word id 2 where 1 was expected"),
    ("# only a comment\n", r"holds no sentences"),
])
def test_conllu_errors_name_file_and_line(tmp_path, body, match):
  path = write(tmp_path, "bad.conllu", body)
  with pytest.raises(text_files.DataError, match=match) as raised:
    conllu.read_conllu(path)
  assert path in str(raised.value)


def test_conllu_missing_file(tmp_path):
  with pytest.raises(text_files.DataError, match=r"nothing\.conllu not found"):
    conllu.read_conllu(os.path.join(tmp_path, "nothing.conllu"))


def test_real_ud_russian_taiga_parses_with_documented_counts():
  folder = shared("ud_russian_taiga")
  expected = {"train": (3138, 43557), "dev": (945, 10094), "test": (881, 10269)}
  for split, (sentence_count, word_count) in expected.items():
    sentences = conllu.read_conllu(os.path.join(folder, f"ru_taiga-ud-{split}.conllu"))
    assert (len(sentences), sum(len(sentence.words) for sentence in sentences)) == (sentence_count, word_count)
    assert all(len(sentence.words) == len(sentence.upos) for sentence in sentences)
    assert len({tag for sentence in sentences for tag in sentence.upos}) == 17, split
    assert len({sentence.sent_id for sentence in sentences}) == sentence_count, split
