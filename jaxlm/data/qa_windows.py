"""Model inputs for extractive QA: [question, separator, context window, padding] of fixed length.

A context longer than fits is cut into overlapping windows; each window is a
separate model input, and post-processing (jaxlm.tasks.squad_scores) takes the best
span over all windows of a question. Every position records which context token it
holds and that token's character span, so a predicted (start, end) position pair
maps back to the original context text.

Layouts of a window of `max_length` positions:
  concatenation (question_positions=0), one sequence for a span head over it:
    [q_0 ... q_{Q-1}, separator, c_first ... c_{stop-1}, pad ...]
    position 0 is NULL_POSITION: the target of both start and end when the window does
    not hold the whole answer (as BERT's [CLS]). It is a question position (or the
    separator, for an empty question), never a context one, so it is never predicted
    as an answer.
  two segments (question_positions=P > 0), for a reader that encodes question and
  context as two sequences (jaxlm.models.reader):
    [q_0 ... q_{Q-1}, pad ... | separator, c_first ... c_{stop-1}, pad ...]
     positions 0 .. P-1          positions P .. max_length-1
    each segment right-padded; the separator at position P starts the context segment
    and is its null position (the reader scores it like a context token).
A window's `null_position` says which.
"""

import dataclasses
from typing import Sequence

import numpy as np

from jaxlm import errors

NULL_POSITION = 0  # start/end target of a window without the whole answer


@dataclasses.dataclass(frozen=True)
class Window:
  """One model input; arrays are [max_length], positions index them."""
  token_ids: np.ndarray  # int32 [max_length]: question, separator, context tokens, then pad_id
  mask: np.ndarray  # bool [max_length]: True on real positions, False on padding
  context_index: np.ndarray  # int32 [max_length]: context token at each position, -1 elsewhere
  char_start: np.ndarray  # int32 [max_length]: the token's first character in `context`, -1 outside it
  char_end: np.ndarray  # int32 [max_length]: one past its last character, -1 outside the context
  context_first: int  # the window holds context tokens [context_first, context_stop)
  context_stop: int
  context: str  # the text that char_start / char_end index
  # The answer's first and last (inclusive) positions; both null_position when the window
  # does not hold the whole answer; None when make_windows was given no answer.
  start_position: int | None
  end_position: int | None
  question_tokens_dropped: int  # question tokens cut off the end (see make_windows)
  null_position: int = NULL_POSITION  # start/end target without the whole answer (the layouts above)


def answer_token_span(context_spans: Sequence[tuple], answer_start: int,
                      answer_end: int) -> tuple[int, int] | None:
  """(first, last) context token index (inclusive) of the characters [answer_start, answer_end).

  first: the first token whose end > answer_start; last: the last token whose start
  < answer_end. So a token partly inside the answer counts (an answer "Пушкин" inside
  the word token "Пушкина" maps to that token), and an empty "▁" piece at a word's
  start is never the first. None when no token overlaps the answer (it lies in spaces).
  """
  first = next((index for index, (_, _, end) in enumerate(context_spans) if end > answer_start), None)
  last = next((index for index in range(len(context_spans) - 1, -1, -1)
               if context_spans[index][1] < answer_end), None)
  if first is None or last is None or first > last:
    return None
  return first, last


def make_windows(question_token_ids: Sequence[int], context_spans: Sequence[tuple[int, int, int]], *,
                 max_length: int, stride: int, separator_id: int, context: str,
                 answer: tuple[int, int] | None = None, pad_id: int = 0,
                 question_positions: int = 0) -> list[Window]:
  """The windows of one question: [question, separator, context tokens, padding], each max_length long.

  Args:
    question_token_ids: the question's token ids. A question longer than
      max_length // 2 tokens (question_positions tokens, in the two-segment layout) keeps
      its first ones (so half of every window is left for the context); each window's
      `question_tokens_dropped` says how many were cut.
    context_spans: (token id, character start, character end) per context token, in
      order (spans.with_ids of spans.word_spans or spans.piece_spans).
    max_length: positions per window (at least 3).
    stride: the step between the starts of consecutive windows, in context tokens
      (NOT the overlap): window k starts at context token k * step, step =
      min(stride, capacity), capacity = max_length - question tokens - 1, so
      consecutive windows overlap by capacity - step tokens. Windows are added until
      one reaches the end of the context, so every context token (hence every
      character of every token) is in at least one window; the last window may be
      shorter. An answer of at most capacity - step + 1 tokens lies whole in some window.
    separator_id: the token between question and context.
    context: the text the spans index (answers are cut from it).
    answer: for training, the answer's character span [start, end) in `context`.
      Windows that hold all its tokens get its start/end positions; others get
      the null position for both. An answer no token overlaps is the null position everywhere.
    pad_id: the id after the last real position.
    question_positions: 0 for the concatenation layout; P > 0 for the two-segment layout
      (the module docstring), whose question segment is P positions, at most max_length // 2.
  Returns:
    At least one window (an empty context gives one without context tokens).
  """
  if max_length < 3:
    raise errors.ConfigError(f"max_length={max_length}; a window needs at least 3 positions "
                             f"(a question token, the separator and a context token)")
  if stride < 1:
    raise errors.ConfigError(f"stride={stride}; it is the step between window starts, at least 1 token")
  if not 0 <= question_positions <= max_length // 2:
    raise errors.ConfigError(f"question_positions={question_positions}; the question segment takes 0 (the "
                             f"concatenation layout) to max_length // 2 = {max_length // 2} positions")
  kept_question = list(question_token_ids)[:question_positions or max_length // 2]
  dropped = len(question_token_ids) - len(kept_question)
  separator = question_positions or len(kept_question)  # the separator's position
  null_position = question_positions or NULL_POSITION
  offset = separator + 1  # position of the first context token
  capacity = max_length - offset  # >= 1, since the question takes at most half
  # A stride beyond the capacity would skip tokens; a long question shrinks the capacity.
  step = min(stride, capacity)
  answer_tokens = None if answer is None else answer_token_span(context_spans, *answer)

  windows, first, total = [], 0, len(context_spans)
  while True:
    stop = min(first + capacity, total)
    length = offset + stop - first
    token_ids = np.full(max_length, pad_id, np.int32)
    token_ids[:len(kept_question)] = kept_question
    token_ids[separator] = separator_id
    context_index = np.full(max_length, -1, np.int32)
    char_start = np.full(max_length, -1, np.int32)
    char_end = np.full(max_length, -1, np.int32)
    if stop > first:
      chunk = np.asarray(context_spans[first:stop], np.int64).reshape(-1, 3)  # [stop - first, 3]
      token_ids[offset:length] = chunk[:, 0]
      char_start[offset:length], char_end[offset:length] = chunk[:, 1], chunk[:, 2]
      context_index[offset:length] = np.arange(first, stop)
    if answer is None:
      start_position = end_position = None
    elif answer_tokens and first <= answer_tokens[0] and answer_tokens[1] < stop:
      start_position, end_position = (offset + answer_tokens[0] - first,
                                      offset + answer_tokens[1] - first)
    else:
      start_position = end_position = null_position
    positions = np.arange(max_length)
    mask = (positions < length) & ((positions < len(kept_question)) | (positions >= separator))
    windows.append(Window(
        token_ids=token_ids, mask=mask, context_index=context_index,
        char_start=char_start, char_end=char_end, context_first=first, context_stop=stop,
        context=context, start_position=start_position, end_position=end_position,
        question_tokens_dropped=dropped, null_position=null_position))
    if stop >= total:
      return windows
    first += step


def stack_windows(windows: Sequence[Window]) -> dict[str, np.ndarray]:
  """A batch of windows: token_ids, mask [num_windows, max_length]; start/end_positions [num_windows].

  Positions are present only when every window has them (training windows).
  """
  batch = {"token_ids": np.stack([window.token_ids for window in windows]),
           "mask": np.stack([window.mask for window in windows])}
  if windows and all(window.start_position is not None for window in windows):
    batch["start_positions"] = np.asarray([window.start_position for window in windows], np.int32)
    batch["end_positions"] = np.asarray([window.end_position for window in windows], np.int32)
  return batch
