"""Fine-tuning an encoder on a sentence, token or span task: RuCoLA, UD Russian-Taiga UPOS, SST-2,
XQuAD, or your own CSV/TSV, CoNLL-U or SQuAD JSON files.

  python launch/train.py --config=configs/finetune.py:task=rucola,body=transformer \
      --config.task.path=../shared/data/rucola --workdir=runs/finetune/rucola_transformer_scratch
  python launch/evaluate.py --workdir=runs/finetune/rucola_transformer_scratch --best \
      --split=valid,valid_out_of_domain
  python launch/predict.py --workdir=runs/finetune/rucola_transformer_scratch --best --split=test \
      --output=rucola_test.csv           # RuCoLA's leaderboard format: id,acceptable
  python launch/train.py --config=configs/finetune.py:task=xquad_ru,body=transformer \
      --config.task.path=../shared/data/xquad --workdir=runs/finetune/xquad_ru_transformer_scratch
  python launch/evaluate.py --workdir=runs/finetune/xquad_ru_transformer_scratch --best \
      --split=valid                      # SQuAD v1.1 EM / F1, official and "unicode" normalisation
  python launch/predict.py --workdir=runs/finetune/xquad_ru_transformer_scratch --best --split=valid \
      --output=xquad_ru_valid.json       # {question id: answer text}, SQuAD's prediction format
  python launch/train.py --config=configs/finetune.py:task=squad_en,body=lstm,start=fasttext \
      --config.task.path=../shared/data/squad --config.model.fasttext_path=runs/squad_en/fasttext.bin \
      --workdir=runs/finetune/squad_en_lstm_fasttext   # the vectors: task=squad_en below
  python launch/evaluate.py --workdir=runs/finetune/squad_en_lstm_fasttext --best \
      --split=test,xquad_en,xquad_ru     # the official SQuAD v1.1 dev set, XQuAD-en, XQuAD-ru zero-shot

Your own labelled files (task=csv, conllu or squad_json; the keys below are config.task's):

  python launch/train.py --config=configs/finetune.py:task=csv,body=fasttext --config.task.path=my_data \
      --config.task.files.train=train.tsv --config.task.files.valid=dev.tsv --config.task.files.test=test.tsv \
      --config.task.text_column=review --config.task.label_column=stars --workdir=runs/my_task
  python launch/train.py --config=configs/finetune.py:task=conllu,body=lstm --config.task.path=my_treebank \
      --config.task.files.test='' --workdir=runs/my_tagger
  python launch/train.py --config=configs/finetune.py:task=squad_json,body=transformer \
      --config.task.path=my_qa --config.task.file=my_squad.json --workdir=runs/my_qa

Variants (`:task=upos,body=lstm,start=fasttext`):
  task=rucola  RuCoLA acceptability (binary; best checkpoint by Matthews correlation;
               in-domain dev is "valid", out-of-domain dev "valid_out_of_domain", the
               unlabelled test split can only be predicted)
  task=upos    UD Russian-Taiga UPOS tagging, word-level accuracy over every gold word
  task=sst2    GLUE SST-2 sentiment (English, already tokenised: whitespace tokenizer)
  task=xquad_ru  extractive QA on XQuAD's Russian SQuAD v1.1 file (../shared/data/xquad):
               every 4th article (dev_fraction 0.25: 12 of 48, ~300 questions) is "valid",
               the other 36 train; windows of 128 word tokens, 64 between window starts.
               The best checkpoint is by valid F1; EM / F1 come with the official and a
               "unicode" normalisation (every validation, and launch/evaluate.py)
  task=xquad_en_to_ru  zero-shot transfer: train on the English file's training articles,
               validate on the Russian file's dev articles (the same 12 articles, translated;
               task.eval_file; the English dev articles are "valid_source"). The bag input
               gives every dev word a row of its own (from the texts, no label), but with
               start=scratch training never updates the Russian words' rows, and their
               n-gram buckets only where an English n-gram hashes to the same bucket: only
               what needs no word meaning can transfer (matching question words in the
               context, punctuation, numbers, positions). Rows that mean the same in both
               languages need a bilingual pre-trained start, which no config here makes
  task=squad_en  English SQuAD v1.1 (../shared/data/squad): train on the 44-article slice of
               train (11,877 questions) less every 10th article, which is "valid" (picks the
               checkpoint); "test" is the official dev set (10,570 questions), "xquad_en" and
               "xquad_ru" XQuAD's 1,190 questions of it in English and Russian (zero-shot: no
               Russian word is trained on). SberQuAD or any SQuAD v1.1 file works the same way
               through task.path, task.file and task.test_files.<split>. It reads with the
               question-aware reader (task.span_head="reader": question and context through
               the same body as two sequences, exact-match features, aligned question
               attention, bilinear start/end; "concatenation" is the one-sequence span head).
               English FastText vectors for start=fasttext, from the training slice's
               questions and contexts plus WikiText-2's train split (config.fasttext):
                 python launch/fasttext.py --config=configs/finetune.py:task=squad_en \
                     --config.task.path=../shared/data/squad --output=runs/squad_en/fasttext.bin
               then --config.model.fasttext_path=runs/squad_en/fasttext.bin. Measured
               (BENCHMARKS.md, three seeds): the BiLSTM reader from FastText scores 32.9 EM /
               44.4 F1 on average (32.0-33.8 / 43.6-44.8) on the official dev set, best at step
               900-1,500 (6-11 min of training on 2 cores); the transformer reader learns best at
               lr 3e-4 (25.1 F1 after 3,600 steps)
  task=csv     your own classification files: train.csv, dev.csv and test.csv in task.path
               (a .tsv name reads tab-separated, unquoted), a header row with the columns
               "text" and "label" (task.text_column, task.label_column; any labels, two or
               more), rows numbered unless task.id_column names an id column; the test file
               may lack the label column (then it is only predicted), and
               --config.task.files.test='' leaves it out. Best checkpoint by dev accuracy
  task=conllu  your own CoNLL-U treebank: train.conllu, dev.conllu, test.conllu (UPOS
               tagging as task=upos; --config.task.files.test='' where there is none)
  task=squad_json  your own SQuAD v1.1 JSON file, qa.json (task.file): every 10th article
               (task.dev_fraction 0.1) is "valid", the rest train, as task=xquad_ru
  body=transformer | lstm | tcn   bidirectional encoders (causal=False) of one small size,
               the shapes configs/ru_mlm.py pre-trains (common.use_small_encoder)
  body=fasttext  the FastText baseline: no body, the mean of the FastText bag vectors
               (classification) or each word's own bag vector (tagging), then the head
  input=bag    (default) the FastText-style embedding bag over words (model.input="bag")
  input=bpe    SentencePiece BPE pieces of the words (task.tokenizer="bpe", a word table of
               pieces): the pre-trained run's model with start=checkpoint, else one trained on
               the task's training texts (task.bpe_vocab_size); tagging scores each word on its
               first piece, QA keeps each piece's character span
  start=scratch  random input table over the task's training words (or pieces)
  start=fasttext  the FastText bag (word rows and n-gram buckets) from model.fasttext_path;
               with input=bpe each piece's row from its word or n-grams (fasttext_pieces)
  start=frozen   the same, with the input table frozen
  start=checkpoint  the input layer and body of a pre-trained run: give
               --config.init.checkpoint=<workdir>[:best]; its vocabulary replaces the task's,
               and model.* here must match its model (configs/ru_mlm.py and configs/ru_lm.py
               share this width, input and bag settings)
  smoke        seconds on a CPU (tests)
FastText vectors: `launch/fasttext.py --config=configs/ru_lm.py ...` (dim 128, n-grams 3..5,
100,000 buckets, as model.* below).

Published anchors (not directly comparable): RuCoLA in-domain dev majority class 74.6%
accuracy / MCC 0, ruBERT about 0.42 test MCC; UDPipe 1.2 about 88-90 UPOS on Taiga with
gold tokens (UDPipe 2 about 96-97 on later, larger releases; ../shared has r2.7, 3,138
train sentences); SST-2 dev accuracy 80-83% for bag-of-vectors models, ~91-93% BERT-base.
Speed (BENCHMARKS.md, "Fine-tuning speed"): the FastText baseline's RuCoLA run takes 10-16 s
on 2 cores (lazy AdamW, trimmed batches, packed bags), an encoder's 50-85 s.
Measured (BENCHMARKS.md, 2-core CPU, one seed): a RuCoLA run took 101 s; dev
MCC 0.21 from scratch, 0.25 from FastText, 0.16 from a 1,000-step RusLit masked LM,
0.25 for the FastText baseline (accuracy 73-76% against the majority class's 74.6%).
UPOS test accuracy is 90.6 / 90.9 / 86.0 / 90.5 for the same four. XQuAD-ru learns
nothing in this budget with any body or start (0-2.4% EM, 3.7-7.3% F1; uniformly random
spans of 1-30 words score 5.6 F1), nor does the en->ru zero-shot run (0-0.3% EM, 6.9 F1
from scratch or FastText). With input=bpe (pieces trained on the task's texts): RuCoLA dev
MCC 0.22 from scratch, 0.27 from FastText pieces; UPOS test 78.6 / 79.9 (11-12 points below
the bag: a word is tagged from its first piece, and 3% of test words fall beyond 64
pieces); XQuAD-ru F1 6.1.
"""

import ml_collections

from configs import common

TASKS = {
    "rucola": ("classification", dict(
        files=dict(train="in_domain_train.csv", valid="in_domain_dev.csv",
                   valid_out_of_domain="out_of_domain_dev.csv", test="test.csv"),
        text_column="sentence", label_column="acceptable", id_column="id", max_length=48,
        best_metric="mcc")),
    "sst2": ("classification", dict(
        files=dict(train="train.tsv", valid="dev.tsv", test="test.tsv"),
        text_column="sentence", label_column="label", tokenizer="whitespace", max_length=64)),
    "upos": ("tagging", dict(
        files=dict(train="ru_taiga-ud-train.conllu", valid="ru_taiga-ud-dev.conllu",
                   test="ru_taiga-ud-test.conllu"),
        max_length=64)),  # <eos> + 63 words: 8 of 3,138 train sentences are longer (289 words cut), no dev one
    # XQuAD is SQuAD v1.1 dev's 240 paragraphs (1,190 questions), translated: an evaluation-
    # sized set, so a quarter of its 48 articles is held out and the rest is all the training.
    "xquad_ru": ("squad", dict(file="xquad.ru.json", dev_fraction=0.25)),
    "xquad_en_to_ru": ("squad", dict(file="xquad.en.json", eval_file="xquad.ru.json", dev_fraction=0.25)),
    # SQuAD v1.1 in English (task.path: ../shared/data/squad): the training slice's articles, every
    # 10th held out as "valid" (checkpoints are picked on it); the official dev set is "test", and
    # XQuAD's 1,190 questions of that dev set are scored in English and, zero-shot, in Russian.
    # The question-aware reader (task.span_head): windows of a 32-token question segment and 128
    # context positions (the transformer's 128), 96 context tokens between window starts.
    "squad_en": ("squad", dict(file="train-v1.1-44articles.json", dev_fraction=0.1, test_files=dict(
        test="dev-v1.1.json", xquad_en="../xquad/xquad.en.json", xquad_ru="../xquad/xquad.ru.json"),
        span_head="reader", max_length=160, question_length=32, stride=96)),
    # A user's own files, named by task.path and --config.task.* overrides (the docstring's commands).
    "csv": ("classification", dict(files=dict(train="train.csv", valid="dev.csv", test="test.csv"),
                                   text_column="text", label_column="label")),
    "conllu": ("tagging", dict(files=dict(train="train.conllu", valid="dev.conllu", test="test.conllu"))),
    "squad_json": ("squad", dict(file="qa.json", dev_fraction=0.1)),
}
BODIES = ("transformer", "lstm", "tcn", "fasttext")
INPUTS = ("bag", "bpe")
STARTS = ("scratch", "fasttext", "frozen", "checkpoint")


def get_config(arg: str | None = None):
  variants = common.parse_variants(arg)
  common.check_variants(variants, {"task": tuple(TASKS), "body": BODIES, "start": STARTS, "input": INPUTS,
                                   "smoke": True}, __file__)
  task_name, task_fields = TASKS[variants.get("task", "rucola")]
  body, start = variants.get("body", "transformer"), variants.get("start", "scratch")
  config = common.base_config()
  common.use_task(config, task_name, **task_fields)
  # The size and input settings of configs/ru_lm.py (and ru_mlm.py), so their FastText .bin
  # and their checkpoints fit: width 128, the bag's 100,000 buckets of 3..5-grams.
  config.model.width = 128
  config.model.input = "bag"
  if variants.get("input") == "bpe":  # pieces have their own rows: no n-grams to compose
    config.model.input = "word"
    config.task.tokenizer = "bpe"
  config.model.bucket = 100_000
  config.model.min_n, config.model.max_n = 3, 5
  config.model.transformer.num_layers = 2
  config.model.transformer.num_heads = 4
  # Encoders (causal=False): every word sees the whole sentence.
  # configs/ru_mlm.py pre-trains the same shapes (common.use_small_encoder).
  if body == "fasttext":
    common.use_body(config, "none")
    config.task.head_hidden = 0 if task_name == "classification" else 128
  else:
    common.use_small_encoder(config, body, dropout=0.1)
    if body == "transformer":
      config.model.transformer.max_length = 128  # as configs/ru_mlm.py's
  if start in ("fasttext", "frozen"):
    config.model.init = "fasttext_pieces" if config.task.tokenizer == "bpe" else "fasttext_bag"
    config.model.freeze_embeddings = start == "frozen"
    # An encoder gets FastText rows at the scratch init's scale, as configs/ru_lm.py and
    # ru_mlm.py start theirs (so the pre-trained start began alike); raw FastText vectors
    # (std ~1) swamped the transformer's residual stream and it overfitted (BENCHMARKS.md).
    # The baseline's linear head reads the vectors as they are.
    config.model.fasttext_std = 0.0 if body == "fasttext" else 0.02
  # The head's output is the only new part: a higher rate than pre-training's, short warmup.
  config.optim.lr = 1e-3
  config.optim.warmup_steps = 50
  config.optim.weight_decay = 0.01
  if body == "fasttext":
    # A linear model over fixed-scale features: at 1e-3 its 400 steps never left the majority
    # class on RuCoLA (BENCHMARKS.md); FastText's own supervised mode runs far hotter still.
    # Lazy AdamW updates only the table rows a batch reads (a step costs its rows, not the 16.7M
    # parameters of the table); it moves a rarely read row less than dense Adam's momentum does,
    # so it needs the higher rate: RuCoLA dev MCC 0.268 +- 0.012 over 3 seeds at 3e-2, against
    # 0.247 +- 0.010 for dense AdamW at 1e-2 (BENCHMARKS.md, "Fine-tuning speed"). The transformer
    # uses it too, at a raised table rate (below).
    config.optim.embedding_updates = "lazy"
    config.optim.lr = 3e-2
  # The recurrent and convolutional encoders need more: at 1e-3 both mostly stayed at RuCoLA's
  # majority class in 400 steps (dev MCC 0). RuCoLA dev MCC, seed 0, from scratch, for lr 1e-3 /
  # 3e-3 / 1e-2: BiLSTM 0.153 / 0.252 / 0.203, TCN 0.000 / 0.167 / 0.225; the transformer
  # 0.233 at 1e-3, 0.153 at 3e-3 (BENCHMARKS.md, "The comparison grid": tuned on that dev set, one seed).
  if body == "lstm":
    config.optim.lr = 3e-3
  if body == "tcn":
    config.optim.lr = 1e-2
  if body == "transformer" and start != "frozen":
    # Lazy AdamW on the input table, at 10x the body's rate (a rarely read row moves only when a
    # batch reads it): 3 seeds each, RuCoLA dev MCC 0.238 +- 0.023 against dense AdamW's
    # 0.246 +- 0.029, SST-2 dev 77.6 +- 0.2 against 76.3 +- 0.5, for 1.2-1.5x fewer CPU-seconds a
    # cell (BENCHMARKS.md, "Fine-tuning speed"). At 1x it scored lower; the BiLSTM and TCN were
    # probed on one seed only, so they keep dense updates.
    config.optim.embedding_updates = "lazy"
    config.model.embedding_lr_multiplier = 10.0
  if task_name in ("classification", "tagging"):
    # Each batch cut to a multiple of 16 positions that holds its longest sentence: a RuCoLA batch
    # of 32 was ~78% padding at 48 positions (BENCHMARKS.md, "Fine-tuning speed").
    config.task.length_multiple = 16
  config.train.batch_size = 32
  # Two CPU-minutes a run on the 2-core machine (BENCHMARKS.md): 400 steps of 32 sentences
  # (~1.6 RuCoLA epochs, ~4 of Taiga), validated every 50.
  config.train.steps = 400
  config.train.log_every = 50
  config.train.eval_every = 50
  config.train.eval_batch_size = 64
  # Every start gets the same 400 steps; the best checkpoint by the dev metric is kept (dev
  # MCC moves by +-0.1 between validations, so stopping early on it would stop on noise).
  config.train.patience = 0
  config.train.keep_checkpoints = 1
  # A checkpoint when a validation is the best so far and at the end; resume points only every
  # 1,000 steps besides: saving the 16.7M-row table and its moments at each of a 400-step cell's
  # 8 validations took 12% of the cell (BENCHMARKS.md, "Fine-tuning speed").
  config.train.checkpoint_every = 1000
  if variants.get("task") == "squad_en":
    # 10,565 training questions are ~15k windows, 470 steps an epoch: the BiLSTM reader from FastText
    # peaked in valid F1 at step 1,500 of a constant-rate run and overfitted after (BENCHMARKS.md).
    config.train.steps = 1800
    config.train.eval_every = config.train.log_every = 300
    config.train.eval_batch_size = 64
    config.optim.schedule = "constant"
    # English FastText vectors from text that is not evaluated on: the training articles' questions
    # and contexts plus WikiText-2's train split (launch/fasttext.py; the docstring's command).
    config.fasttext = ml_collections.ConfigDict(dict(
        corpus="", texts=("jaxlm/data/wikitext-2/train.txt.xz",), sg=True, epochs=5, min_count=3, window=5,
        workers=2, seed=0))
  if "smoke" in variants:
    common.apply_smoke(config)
    config.model.bucket = 2000
    config.task.max_length = 16
    config.task.bpe_vocab_size = 400  # the tiny test texts' characters + 256 byte pieces, then merges
    if task_name == "squad":
      config.task.stride = 4  # windows that overlap within the 16 smoke positions
      config.task.question_length = 6  # the reader's question segment: at most half of them
    config.train.eval_tokens = 0
    if task_name in ("classification", "tagging"):
      config.task.length_multiple = 4  # a few lengths within the 16 smoke positions
  return common.finish(config)
