"""Speaker-adaptive voice scoring: a clip's features measured against its speaker's usual voice.

Emotion is a departure from how a person usually sounds, and a voice's pitch, loudness and timbre
differ more between people than between one person's emotions. Speech-emotion research therefore
normalises features per speaker (Busso, Mariooryad, Metallinou and Narayanan, "Iterative feature
normalization scheme for automatic emotion detection from speech", IEEE TAC 2013): every clip's
feature vector is z-normalised with the mean and standard deviation of *its own speaker's* clips.
The labels are never used, so the statistics can come from the data being scored.

A bundle trained with ``emo train-audio --adapted-model`` holds, beside the plain voice model, one
trained on features normalised this way (``voice_speaker.*``). Where emo knows who speaks, it
scores with that model:

- ``emo evaluate --adapt speaker``: corpora whose layout names the speaker (RAVDESS, CREMA-D,
  EmoDB, SAVEE, TESS, a CSV manifest's ``speaker`` column); statistics from every clip of that
  speaker in the evaluated set.
- ``emo predict --speaker-of REGEX|FILE.csv``: bulk runs; the speaker is read from each input's
  name (the regex's ``speaker`` group, else its first group, else the whole match) or looked up
  in a CSV with ``path`` and ``speaker`` columns.
- Streams and long clips with ``--window``: running statistics of the windows heard so far
  (:class:`RunningStats`), used once :data:`WARMUP_SECONDS` of voiced windows have been seen.

A speaker with fewer than :data:`MIN_CLIPS` clips keeps the plain model: the mean and spread
of a few clips say more about those clips' emotions than about the voice (with one clip, the
normalised vector is all zeros). The statistics are only as good as the speaker's clips are
varied: a speaker heard only in anger has anger for a baseline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emocli.corpus.layouts import read_csv_rows
from emocli.errors import DatasetError, ParameterError
from emocli.report.output import printable

MODEL_NAME = "voice_speaker"  # file stem of the speaker-normalised voice model in a bundle
# A speaker with fewer clips is scored with the plain model. Measured on the training speakers
# (scripts/speaker_norm_eval.py --clips-curve: statistics from k random clips of each validation
# speaker): UAR 0.610 with 4 clips, 0.673 with 6, 0.685 with 8, 0.757 with all, against 0.662
# without adaptation; 6 is the fewest that beat it.
MIN_CLIPS = 6
WARMUP_SECONDS = 20.0  # seconds of voiced windows a stream must have before it is adapted
HALF_LIFE_SECONDS = 300.0  # a stream's statistics forget with this half-life (in voiced seconds)
_ABS_FLOOR = 1e-6
_REL_FLOOR = 1e-3  # a feature's std is floored at this share of its mean's magnitude


@dataclass(frozen=True)
class SpeakerStats:
    """Mean and standard deviation of one speaker's feature vectors."""
    mean: np.ndarray
    std: np.ndarray
    n: float  # clips (or voiced seconds, for a stream) they were computed from

    @classmethod
    def of(cls, rows: np.ndarray) -> "SpeakerStats":
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or not len(rows):
            raise ParameterError(f"speaker statistics need a non-empty (n, d) array, got shape {rows.shape}")
        return cls(rows.mean(0), rows.std(0), len(rows))

    def normalise(self, x: np.ndarray) -> np.ndarray:
        """``(x - mean) / std`` with the std floored (a constant feature does not explode)."""
        x = np.asarray(x, dtype=np.float64)
        return (x - self.mean) / np.maximum(self.std, _ABS_FLOOR + _REL_FLOOR * np.abs(self.mean))


def normalise_groups(x: np.ndarray, groups, *, basis=None) -> np.ndarray:
    """Each row of ``x`` normalised by the statistics of its group's rows.

    ``basis``: optional boolean mask of the rows the statistics are computed from (e.g. real
    recordings, not augmented copies); every row of a group is normalised with them.
    """
    x = np.asarray(x, dtype=np.float64)
    groups = np.asarray(groups)
    basis = np.ones(len(x), bool) if basis is None else np.asarray(basis, bool)
    out = np.empty_like(x)
    for g in np.unique(groups):
        m = groups == g
        ref = m & basis
        out[m] = SpeakerStats.of(x[ref] if ref.any() else x[m]).normalise(x[m])
    return out


class RunningStats:
    """Exponentially weighted mean and variance of a stream's voice vectors.

    Each :meth:`update` adds a vector with a weight (its voiced seconds); older vectors fade with
    a half-life of ``half_life`` voiced seconds, so a long stream follows a drifting baseline
    while memory stays constant. :attr:`ready` once ``warmup`` voiced seconds were seen.
    """
    def __init__(self, *, warmup: float = WARMUP_SECONDS, half_life: float = HALF_LIFE_SECONDS):
        if warmup < 0 or half_life <= 0:
            raise ParameterError("warmup must be >= 0 and half_life > 0")
        self.warmup = float(warmup)
        self.half_life = float(half_life)
        self.seconds = 0.0  # voiced seconds seen (not decayed)
        self._w = 0.0
        self._s1: np.ndarray | None = None
        self._s2: np.ndarray | None = None

    def update(self, x: np.ndarray, seconds: float) -> None:
        x = np.asarray(x, dtype=np.float64)
        if seconds <= 0 or not np.isfinite(x).all():
            return
        decay = 0.5 ** (seconds / self.half_life)
        if self._s1 is None:
            self._s1, self._s2 = np.zeros_like(x), np.zeros_like(x)
        self._w = decay * self._w + seconds
        self._s1 = decay * self._s1 + seconds * x
        self._s2 = decay * self._s2 + seconds * x * x
        self.seconds += seconds

    @property
    def ready(self) -> bool:
        return self._s1 is not None and self.seconds >= self.warmup

    def stats(self) -> SpeakerStats:
        if self._s1 is None:
            raise ParameterError("no vector was added yet")
        mean = self._s1 / self._w
        var = np.maximum(self._s2 / self._w - mean * mean, 0.0)
        return SpeakerStats(mean, np.sqrt(var), self.seconds)


class SpeakerRule:
    """Who speaks in each input of a bulk run (``predict --speaker-of``).

    ``spec`` is a path to a CSV file (columns ``path`` and ``speaker``; paths relative to the
    CSV's folder) when it ends in ``.csv``, otherwise a regular expression searched in the input's
    name: the speaker is its ``speaker`` group, else its first group, else the whole match.
    """
    kind = "speaker"  # the adaptation it gives (RunRule's is "run")

    def __init__(self, spec: str):
        self.spec = spec
        self.table: dict[str, str] | None = None
        self.pattern: re.Pattern | None = None
        if spec.lower().endswith(".csv"):
            self.table = _read_speaker_csv(Path(spec))
        else:
            try:
                self.pattern = re.compile(spec)
            except re.error as exc:
                # a plain ValueError, not ParameterError: predict turns it into a usage error (exit 2)
                raise ValueError(f"--speaker-of {spec!r} is not a valid regular expression ({exc}); "
                                 r"e.g. '(\d{4})_' for CREMA-D names, or pass a CSV file with path,speaker") from None

    def speaker(self, name: str, path: Path | None = None) -> str | None:
        """The speaker of an input shown as ``name`` (read from ``path`` when it is a file), or None."""
        if self.table is not None:
            for key in (name, str(path) if path else None, _resolved(path), _resolved(Path(name))):
                if key and key in self.table:
                    return self.table[key]
            return None
        m = self.pattern.search(name)
        if m is None:
            return None
        if "speaker" in m.re.groupindex:
            return m.group("speaker")
        return m.group(1) if m.re.groups else m.group(0)


def _resolved(path: Path | None) -> str | None:
    try:
        return str(path.resolve()) if path else None
    except OSError:
        return None


def _read_speaker_csv(path: Path) -> dict[str, str]:
    rows = read_csv_rows(path, what="speaker table",
                         fix="pass a UTF-8 CSV file with columns path,speaker (or a regular expression)")
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if "path" not in header or "speaker" not in header:
        raise DatasetError(f"{path}: a speaker table needs a header row with columns path and speaker; got "
                           f"{','.join(header) or 'an empty file'}")
    ip, isp = header.index("path"), header.index("speaker")
    table: dict[str, str] = {}
    for row in rows[1:]:
        if len(row) <= max(ip, isp) or not row[ip].strip() or not row[isp].strip():
            continue
        p, who = row[ip].strip(), row[isp].strip()
        table[p] = who
        full = Path(p) if Path(p).is_absolute() else path.parent / p
        table[_resolved(full) or p] = who
    if not table:
        raise DatasetError(f"{path}: the speaker table has no rows with both a path and a speaker")
    return table


def speaker_stats(pairs, *, min_clips: int = MIN_CLIPS) -> tuple[dict[str, int], dict[str, SpeakerStats]]:
    """From (speaker, result) pairs: each speaker's count of voiced results, and the statistics of
    those with at least ``min_clips`` (results without a speaker, a voice or status ok are skipped)."""
    vectors: dict[str, list[np.ndarray]] = {}
    for who, res in pairs:
        if who is not None and res.status == "ok" and res.voice_vector is not None:
            vectors.setdefault(who, []).append(res.voice_vector)
    counts = {who: len(v) for who, v in sorted(vectors.items())}
    return counts, {who: SpeakerStats.of(np.stack(v)) for who, v in vectors.items() if len(v) >= min_clips}


class RunRule:
    """``--adapt run``: every input of a bulk run shares one baseline (the speakers are unknown; the run's
    clips stand for the recording conditions, as a corpus does)."""
    spec = "run"
    kind = "run"

    def speaker(self, name: str, path: Path | None = None) -> str:
        return RUN_GROUP


RUN_GROUP = "(run)"  # the one group of --adapt run


def adapt_results(pipe, results, rule: "SpeakerRule | RunRule", *, min_clips: int = MIN_CLIPS):
    """Two passes over a bulk run: gather every result, then rescore each voice against its group's
    statistics (:meth:`emocli.pipeline.core.Pipeline.adapt`); yields the results in input order.
    The group is the speaker :class:`SpeakerRule` finds in the input's name, or the whole run
    (:class:`RunRule`).

    A result whose group is unknown, or has fewer than ``min_clips`` voiced results in the run,
    keeps the plain scores and a note says why.
    """
    kind = rule.kind
    done = list(results)
    who = [rule.speaker(res.file) if res.status == "ok" else None for res in done]
    counts, stats = speaker_stats(zip(who, done), min_clips=min_clips)
    for res, w in zip(done, who):
        if res.status != "ok":
            yield res
            continue
        if pipe.adapt(res, stats.get(w), speaker=None if kind == "run" else w, kind=kind):
            res.notes.append(f"voice scored against the run's baseline ({counts[w]} clips)" if kind == "run" else
                             f"voice scored against speaker {printable(w)}'s own baseline ({counts[w]} clips)")
        else:
            res.notes.append(_plain_note(res, w, kind=kind, spec=rule.spec, count=counts.get(w, 0),
                                         min_clips=min_clips))
        yield res


def _plain_note(res, who: str | None, *, kind: str, spec: str, count: int, min_clips: int) -> str:
    """Why a result of an adapted run kept the plain voice model."""
    if res.voice_scores is None:
        return f"no voice: {kind} adaptation not applied"
    if res.voice_vector is None:
        return (f"a live stream's voice is scored window by window: --adapt {kind} does not apply to it "
                "(use --adapt stream)")
    if who is None:
        return f"no speaker found in the name by --speaker-of {printable(spec)}: plain voice model"
    if kind == "run":
        return f"the run has {count} voiced clip(s); run adaptation needs {min_clips}: plain voice model"
    return (f"speaker {printable(who)} has {count} voiced clip(s) in this run; speaker adaptation needs "
            f"{min_clips}: plain voice model")
