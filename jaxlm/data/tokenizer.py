"""A model's text -> token ids: its vocabulary, and the SentencePiece model that cuts words into pieces.

A `Tokenizer` owns what every fine-tuning task encodes with: the vocabulary (a list of
tokens, index = id), the token -> id index, the ids of <unk> and of the start token that
opens every example, and for a BPE vocabulary the SentencePiece processor (the one place a
task's .model is loaded; jaxlm.data.sentencepiece_tokenizer trains and finds the files).

Two kinds of vocabulary:
  words   one id per word; a word the vocabulary lacks is <unk>. The start token is <eos>,
          the token that ends each line of a word-level language model's stream;
  pieces  each word's SentencePiece pieces (byte fallback, so no text is <unk>). The
          vocabulary begins with the model's pieces in id order (a pre-trained run's may
          add tokens after them, e.g. a masked LM's <mask>). The start token is "</s>",
          SentencePiece's end-of-line piece (jaxlm.data.corpora's line end).
Text is read as jaxlm's word tokens (jaxlm.data.works.tokenise_line) and, for pieces, those
words' pieces; `token_spans` keeps each token's character span in the original text
(jaxlm.data.spans), so a span predicted over tokens is cut from the text as written.
"""

from typing import Sequence

from jaxlm.data import spans as spans_lib
from jaxlm.data import vocabulary as vocabulary_lib

START = vocabulary_lib.END_OF_SENTENCE  # a word vocabulary's start token, <eos>
PIECE_START = "</s>"  # a SentencePiece model's end-of-line piece
UNKNOWN = vocabulary_lib.UNKNOWN  # SentencePiece's unknown piece has the same name


class Tokenizer:
  """Words or text -> ids of `words` (<unk> for a word it lacks), or of their SentencePiece pieces.

  Attributes:
    words: the vocabulary, index = token id.
    index: token -> id.
    unknown_id, start_id: the ids of <unk> and of the start token (<eos>, or "</s>" for pieces).
    sentencepiece_model: the .model path ("" for words); processor: it, loaded (None for words).
  """

  def __init__(self, words: Sequence[str], sentencepiece_model: str = "", *, processor=None):
    """processor: `sentencepiece_model` already loaded (from_sentencepiece, with_words), else it is loaded here."""
    self.words = list(words)
    self.index = {word: position for position, word in enumerate(self.words)}
    self.sentencepiece_model = sentencepiece_model
    self.processor = processor
    if sentencepiece_model and processor is None:
      from jaxlm.data import sentencepiece_tokenizer
      self.processor = sentencepiece_tokenizer.load_sentencepiece(sentencepiece_model)
    self.unknown_id = self.index[UNKNOWN]
    self.start_id = self.index[PIECE_START if self.processor is not None else START]

  @classmethod
  def from_sentencepiece(cls, model_path: str) -> "Tokenizer":
    """The model's pieces as the vocabulary."""
    from jaxlm.data import sentencepiece_tokenizer
    processor = sentencepiece_tokenizer.load_sentencepiece(model_path)
    return cls(sentencepiece_tokenizer.pieces_of(processor), model_path, processor=processor)

  def with_words(self, words: Sequence[str]) -> "Tokenizer":
    """The same tokenisation with another vocabulary (a saved run's, or pieces and then more tokens)."""
    return Tokenizer(words, self.sentencepiece_model, processor=self.processor)

  def ids(self, tokens) -> list[int]:
    """Tokens (words, or pieces as strings) -> their ids; one the vocabulary lacks -> <unk>."""
    return [self.index.get(token, self.unknown_id) for token in tokens]

  def word_ids(self, words: Sequence[str]) -> list[list[int]]:
    """Each given word's ids: one for a word vocabulary; its pieces (at least one) for SentencePiece,
    the pieces it has inside a line (a word never shares a piece with its neighbours)."""
    if self.processor is None:
      return [[self.index.get(word, self.unknown_id)] for word in words]
    # An empty word (a treebank token of removed characters only) still needs a position.
    return [pieces or [self.unknown_id] for pieces in self.processor.encode(list(words))]

  def token_spans(self, text: str) -> list[spans_lib.Span]:
    """The tokens of raw `text` (its words, or their pieces), each with its character span in `text`."""
    if self.processor is None:
      return spans_lib.word_spans(text)
    return spans_lib.piece_spans(text, self.processor)

  def encode(self, words_or_text: str | Sequence[str]) -> list[int]:
    """The ids of raw text (read as token_spans reads it) or of given words (word_ids, flattened);
    no start token."""
    if isinstance(words_or_text, str):
      return self.ids(span.token for span in self.token_spans(words_or_text))
    return [token_id for word_ids in self.word_ids(words_or_text) for token_id in word_ids]
