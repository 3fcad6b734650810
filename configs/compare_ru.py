"""Does pre-training pay? Fine-tuning tasks x bodies x starts x seeds, and the pre-training they start from.

A grid config for launch/compare.py (not a model config: launch/train.py does not read it):

  python launch/compare.py --grid=configs/compare_ru.py --workdir=runs/compare_ru --parallel=2
  python launch/compare.py --grid=configs/compare_ru.py:small --workdir=runs/compare_ru_small
  python launch/compare.py --grid=configs/compare_ru.py --workdir=runs/compare_ru --dry_run  # every command
  python launch/compare.py --grid=configs/compare_ru.py --workdir=runs/compare_ru --only='rucola/*/scratch/*'

Each fine-tuning cell is `python launch/train.py --config=configs/finetune.py:task=T,body=B,
start=S --config.<override>... --config.seed=K --workdir=<workdir>/finetune/T/B/S/seedK`
(--dry_run prints each exact command), scored at its best checkpoint by
launch/evaluate.py. Cells read ../shared/data (paths relative to the repository root).

Keys:
  finetune           the config every fine-tuning cell is a variant of
  finetune_variants  variants added to every cell's ("smoke" in the smoke grid)
  pretrain_seeds     one pre-training cell per seed and start ((0,) = one shared); fine-tuning seed
                     k reads pre-training k mod len(pretrain_seeds)
  tasks, bodies, starts, seeds   the grid (starts: jaxlm.tools.compare.grid.STARTS: scratch |
                     fasttext | frozen | mlm (a masked-LM checkpoint) | mlm_vmf (a masked LM with
                     the vMF embedding head: not in the default starts, --grid.starts adds it) |
                     clm (a causal-LM one) | bpe_fasttext (BPE pieces, each row from FastText);
                     a checkpoint start with "@<step>", e.g. mlm@1000, reads that step of its
                     pre-training instead of the best, and the pre-training keeps it)
  overrides          "key=value" for every fine-tuning cell: the equal budget
  task.<name>        (rucola, upos, xquad_ru, sst2, and squad_en: English SQuAD with the reader,
                     in a grid by --grid.tasks="('rucola','upos','sst2','squad_en')")
                     language (which pre-training), metric (its summary key in the table),
                     splits (scored at the best checkpoint, "valid" first), test_split
                     (a labelled split that picks no checkpoint, the table's "test"; "" = none),
                     overrides (its data path), extra_starts (starts for this task
                     only, after `starts`), also_metrics (more dev summary keys the
                     table shows beside the metric, at the same checkpoint)
  search             the tuning budget per row (jaxlm/tools/compare/search.py): trials (0 = none),
                     seed (the trials' training seed), startup_trials, storage (the Optuna study's
                     database; "" = <workdir>/search.sqlite3), space (name -> kind, low/high or
                     choices, and the config keys it sets). With trials > 0 every row first runs
                     that many trial cells (<task>/<body>/<start>/trial<k>), then its seeds with
                     the best trial's settings: --grid.search.trials=8
  pretrain.<lang>    fasttext (launch/fasttext.py), mlm and clm (launch/train.py): config,
                     overrides ({fasttext} = the FastText cell's .bin, {body} the body),
                     bodies (which bodies get that pre-training; other bodies' cells with
                     that start are left out, listed by --dry_run), body_overrides

The budget: every fine-tuning cell gets configs/finetune.py's 400 steps of 32 examples at
its body's learning rate (RuCoLA: 25-204 CPU-seconds a cell when the recorded grid ran,
BENCHMARKS.md, "The comparison grid"; with configs/finetune.py's faster defaults since, about 14-22
for the FastText baseline and 50-100 for an encoder, BENCHMARKS.md, "Fine-tuning speed"),
validated every 50 steps; its best checkpoint by the dev metric is the early-stopped model
(train.patience stays 0: dev MCC moves by +-0.1 between validations). Its dev number is
therefore the maximum over 8 validations (optimistic); test numbers are not. Pre-training:
configs/ru_mlm.py and ru_lm.py's 1,000 steps of 16 x 64 tokens (7.6-11 CPU-minutes a body),
FastText 5 epochs over RusLit (5.7 CPU-minutes); WikiText-2 for SST-2 likewise.

Left out by design: the causal-LM start for the BiLSTM and TCN (configs/ru_lm.py pre-trains
a transformer only, and a forward-only LSTM has other parameters than a bidirectional
one), and every checkpoint start for the FastText baseline (it has no body to start).

Full grid: 4 tasks x (3 + 4 + 4 + 5 starts by body) x 3 seeds = 192 fine-tuning cells,
+ RuCoLA's BPE-from-FastText row (4 bodies x 3 seeds = 12), + 10 pre-training cells: 12.6
CPU-hours, ~6.3 hours on 2 cores at --parallel=2, when it ran (before the faster defaults; a
rerun trains with them, so its numbers will differ from the recorded ones). BENCHMARKS.md, "The comparison grid", has the whole
grid's table and a reading per task, the `small` slice, and a GPU sitting of RuCoLA cells
with 10x the masked-LM pre-training (launch/compare_gpu.sh: the grid with
--grid.pretrain.ru.mlm.overrides=... on the command line).

Variants:
  converge  the grid at convergence: RuCoLA, UPOS, SST-2 and English SQuAD x 4 bodies x starts
          scratch, fasttext, mlm@1000, mlm@3000, mlm, mlm_vmf, clm; each task's budget in steps
          (CONVERGE: at most 20 / 30 / 5 / 10 epochs, validated every half epoch, a quarter for
          SST-2) with train.patience=6 on a mean of the last 3 validations; 8 trials a row; 5 seeds
          over 2 independent pre-trainings; 10x each pre-training (10,000 Russian steps, 5,900
          English), read at steps 1,000 and 3,000 and at its best. 1,124 cells: far more than one
          2-core machine's 8 CPU-hours (BENCHMARKS.md, "The grid at convergence")
  sitting   with converge: the slice one sitting runs (RuCoLA, FastText baseline and transformer,
          scratch / fasttext / mlm@1000 / mlm@3000 / mlm, 2 trials a row: 53 cells)
  small   RuCoLA x {FastText baseline, transformer} x {scratch, fasttext} x 3 seeds (12 cells
          + the FastText vectors): the slice BENCHMARKS.md records
  smoke   tasks rucola, upos x bodies fasttext, transformer x scratch x 2 seeds on
          configs/finetune.py's smoke variant; the task paths are empty (tests point them
          at fixture files)
"""

import ml_collections

from configs import common

RUSLIT = "data.path=../shared/data/ruslit"
# configs/quickstart.py and wt2_mlm.py at configs/finetune.py's encoder shape (width 128, the
# bag of 100,000 3..5-gram buckets, FastText rows at std 0.02), so their checkpoints fit.
ENGLISH_SHAPE = ("model.width=128", "model.input=bag", "model.bucket=100000", "model.min_n=3", "model.max_n=5",
                 "model.init=fasttext_bag", "model.fasttext_path={fasttext}", "model.fasttext_std=0.02")


def _task(language, metric, splits, test_split, path, *extra, extra_starts=(), also_metrics=()):
  return dict(language=language, metric=metric, splits=splits, test_split=test_split,
              overrides=(f"task.path={path}",) + extra, extra_starts=extra_starts, also_metrics=also_metrics)


# Each task's budget at convergence, in steps of configs/finetune.py's 32 examples (a trial's batch
# size changes the examples a step sees, not the steps): a validation every half epoch (a quarter
# for SST-2's 2,105-step epochs), a stated maximum, and patience on a moving mean of the dev metric.
CONVERGE = dict(
    rucola=("train.steps=4920", "train.eval_every=123"),  # 7,869 sentences: 246 steps an epoch, at most 20
    upos=("train.steps=2940", "train.eval_every=49"),  # 3,138 sentences: 98 steps an epoch, at most 30
    sst2=("train.steps=10525", "train.eval_every=526"),  # 67,349 sentences: 2,105 steps an epoch, at most 5
    squad_en=("train.steps=4700", "train.eval_every=235"),  # ~15k windows: 470 steps an epoch, at most 10
)


def _converge(config) -> None:
  """The grid at convergence: four tasks, patience, 8 trials a row, 5 seeds over 2 pre-trainings each,
  and 10x the pre-training with two checkpoints along the way read downstream."""
  config.tasks = ("rucola", "upos", "sst2", "squad_en")
  # mlm@1000 and mlm@3000: the masked LM at 1,000 (today's whole pre-training in Russian) and 3,000
  # of its 10,000 steps, so the table says what more pre-training buys; mlm_vmf: the cheap
  # pre-training itself (the vMF embedding head). The frozen and BPE rows are decided already.
  config.starts = ("scratch", "fasttext", "mlm@1000", "mlm@3000", "mlm", "mlm_vmf", "clm")
  config.task.rucola.extra_starts = ()
  config.seeds = (0, 1, 2, 3, 4)
  config.pretrain_seeds = (0, 1)  # seeds 0, 2, 4 read pre-training 0; seeds 1, 3 pre-training 1
  # Stop once the mean of the last 3 dev validations (1.5 epochs) has not improved for 6 (3 epochs):
  # RuCoLA's dev MCC moves by +-0.1 between single validations. The best checkpoint is still each
  # validation's own, scored by launch/evaluate.py.
  config.overrides = ("train.patience=6", "train.patience_window=3")
  for task, budget in CONVERGE.items():
    config.task[task].overrides = tuple(config.task[task].overrides) + budget
  config.search.trials = 8
  # 10x each pre-training: 10,000 steps of 16 x 64 tokens in Russian (10M tokens), 5,900 of 64 x 64
  # in English (24M), validated every 500 so that steps 1,000 and 3,000 are kept (train.keep_steps).
  for language, steps in (("ru", 10000), ("en", 5900)):
    for kind in ("mlm", "mlm_vmf", "clm"):
      source = config.pretrain[language][kind]
      source.overrides = tuple(source.overrides) + (f"train.steps={steps}", "train.eval_every=500")


def _sitting(config) -> None:
  """converge,sitting: the slice of the converged grid that one 2-core sitting of ~2 hours runs:
  RuCoLA, the FastText baseline and the transformer, starts scratch, fasttext and the masked LM at
  1,000, 3,000 and 10,000 steps, 2 trials a row, 5 seeds over 2 pre-trainings."""
  config.tasks = ("rucola",)
  config.bodies = ("fasttext", "transformer")
  config.starts = ("scratch", "fasttext", "mlm@1000", "mlm@3000", "mlm")
  config.search.trials = 2
  config.search.space.dropout.keys = ("model.transformer.dropout",)  # the BiLSTM's and TCN's are not in it


def get_config(arg: str | None = None):
  variants = common.parse_variants(arg)
  common.check_variants(variants, {"small": True, "smoke": True, "converge": True, "sitting": True}, __file__)
  config = ml_collections.ConfigDict()
  config.finetune = "configs/finetune.py"
  config.finetune_variants = ""
  config.tasks = ("rucola", "upos", "xquad_ru", "sst2")
  config.bodies = ("fasttext", "lstm", "tcn", "transformer")
  config.starts = ("scratch", "fasttext", "frozen", "mlm", "clm")
  config.seeds = (0, 1, 2)
  # Independent pre-trainings per pre-trained start (each FastText, masked-LM and causal-LM cell
  # once per seed here); a row's fine-tuning seeds take them in turn, so its spread includes
  # pre-training's own variance. (0,): one pre-training shared by every seed.
  config.pretrain_seeds = (0,)
  config.overrides = ("train.steps=400", "train.eval_every=50", "train.patience=0")
  # The tuning budget, equal for every row (jaxlm/tools/compare/search.py); 0 trials: no search,
  # every row runs configs/finetune.py's settings (its per-body learning rates).
  config.search = ml_collections.ConfigDict(dict(
      trials=0,
      seed=100,  # the trials' training seed: none of `seeds`, so a seed cell is not the search's selected maximum
      startup_trials=4,  # drawn at random before TPE models the finished ones
      storage="",  # "" = sqlite in the grid's workdir (search.sqlite3); a database URL lets machines share it
      # name -> kind (log | uniform | int | choice), range or choices, and the config keys it sets (a key a
      # row's config lacks is skipped for that row: the FastText baseline has no dropout).
      space=dict(
          lr=dict(kind="log", low=1e-4, high=1e-1, keys=("optim.lr",)),
          dropout=dict(kind="uniform", low=0.0, high=0.4,
                       keys=("model.transformer.dropout", "model.lstm.dropout_input", "model.lstm.dropout_output",
                             "model.tcn.dropout", "model.tcn.dropout_input")),
          weight_decay=dict(kind="log", low=1e-4, high=0.3, keys=("optim.weight_decay",)),
          batch_size=dict(kind="choice", choices=(16, 32, 64), keys=("train.batch_size",)),
      ),
  ))
  config.task = ml_collections.ConfigDict(dict(
      # RuCoLA's test.csv has no labels; its out-of-domain dev set does and never picks a checkpoint.
      # One more row for RuCoLA: BPE pieces started from FastText (the report's "BPE models
      # initialised from FastText plateaued").
      rucola=_task("ru", "mcc", ("valid", "valid_out_of_domain"), "valid_out_of_domain", "../shared/data/rucola",
                   extra_starts=("bpe_fasttext",)),
      upos=_task("ru", "accuracy", ("valid", "test"), "test", "../shared/data/ud_russian_taiga"),
      # F1 picks the checkpoint; exact match (SQuAD's other number) is shown beside it.
      xquad_ru=_task("ru", "f1", ("valid",), "", "../shared/data/xquad", also_metrics=("exact_match",)),
      sst2=_task("en", "accuracy", ("valid",), "", "../shared/data/sst2"),
      # English SQuAD v1.1 with the question-aware reader: checkpoints picked on the training
      # slice's held-out articles, scored on the official dev set ("test").
      squad_en=_task("en", "f1", ("valid", "test"), "test", "../shared/data/squad", also_metrics=("exact_match",)),
  ))
  config.pretrain = ml_collections.ConfigDict(dict(
      ru=dict(
          fasttext=dict(config="configs/ru_lm.py", overrides=(RUSLIT,)),
          mlm=dict(config="configs/ru_mlm.py:input=bag,init=fasttext,body={body}",
                   overrides=(RUSLIT, "model.fasttext_path={fasttext}"),
                   bodies=("transformer", "lstm", "tcn"), body_overrides={}),
          # The same masked LM with the vMF embedding head: the targets are the FastText cell's vectors.
          mlm_vmf=dict(config="configs/ru_mlm.py:input=bag,init=fasttext,head=vmf,body={body}",
                       overrides=(RUSLIT, "model.fasttext_path={fasttext}", "model.target_vectors={fasttext}"),
                       bodies=("transformer", "lstm", "tcn"), body_overrides={}),
          # A causal transformer has the encoder's parameters; positions for finetune.py's 128.
          clm=dict(config="configs/ru_lm.py:input=bag,init=fasttext",
                   overrides=(RUSLIT, "model.fasttext_path={fasttext}", "model.transformer.max_length=128"),
                   bodies=("transformer",), body_overrides={}),
      ),
      en=dict(
          fasttext=dict(config="configs/wt2_mlm.py", overrides=ENGLISH_SHAPE[:5]),
          mlm=dict(config="configs/wt2_mlm.py:body={body}", overrides=ENGLISH_SHAPE,
                   bodies=("transformer", "lstm", "tcn"),
                   # use_small_encoder sized the LSTM and TCN by wt2_mlm's width 256 before the overrides.
                   body_overrides=dict(transformer=("model.transformer.max_length=128",),
                                       lstm=("model.lstm.hidden_size=128",), tcn=("model.tcn.hidden_size=128",))),
          # wt2_mlm set target_dim from its width 256 before the overrides: the vectors are 128 wide.
          mlm_vmf=dict(config="configs/wt2_mlm.py:body={body},head=vmf",
                       overrides=ENGLISH_SHAPE + ("model.target_dim=128", "model.target_vectors={fasttext}"),
                       bodies=("transformer", "lstm", "tcn"),
                       body_overrides=dict(transformer=("model.transformer.max_length=128",),
                                           lstm=("model.lstm.hidden_size=128",), tcn=("model.tcn.hidden_size=128",))),
          clm=dict(config="configs/quickstart.py", overrides=ENGLISH_SHAPE + ("model.transformer.max_length=128",),
                   bodies=("transformer",), body_overrides={}),
      ),
  ))
  if "converge" in variants:
    _converge(config)
  if "sitting" in variants:
    _sitting(config)
  if "small" in variants:
    config.tasks = ("rucola",)
    config.bodies = ("fasttext", "transformer")
    config.starts = ("scratch", "fasttext")
    config.task.rucola.extra_starts = ()
  if "smoke" in variants:
    config.finetune_variants = "smoke"
    config.tasks = ("rucola", "upos")
    config.bodies = ("fasttext", "transformer")
    config.starts = ("scratch",)
    config.seeds = (0, 1)
    config.overrides = ("train.steps=6", "train.eval_every=3")
    for task in config.task.values():
      task.overrides, task.extra_starts = ("task.path=",), ()
  return common.finish(config)
