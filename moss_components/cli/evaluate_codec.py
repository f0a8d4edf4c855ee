"""``moss-speech evaluate-codec``: tokenizer CER, codebook usage, resynthesis CER and real-time factors.

```
wav --tokenizer--> ids --decoder--> mel --vocoder--> wav' --tokenizer CTC (or --judge)--> text' vs transcript
```
Writes ``OUT/report.json``, a few ``OUT/examples/<id>_{orig,resynth}.wav`` and spectrogram PNGs.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import torch

from moss_components.asr.ctc_vocab import cer, normalize_text
from moss_components.cli.bench_utils import torch_threads

__all__ = ["evaluate_codec"]

log = logging.getLogger(__name__)


def _read_manifest(path: Path, limit: int | None, unseen_only: bool, seed: int = 0) -> list[dict]:
    """The rows to evaluate: a sample of ``limit`` drawn with ``seed``, in manifest order.

    A sample rather than the first rows: the corpus manifests are ordered by fact category, so the first 100
    test utterances are all sums of small numbers, easier to read than the whole split (9.6% vs 12.9% CER).
    """
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if unseen_only and any("unseen_voice" in r for r in rows):
        rows = [r for r in rows if r.get("unseen_voice")]
    if not rows:
        raise ValueError(f"{path}: no utterances to evaluate (unseen_only={unseen_only})")
    if not limit or limit >= len(rows):
        return rows
    return [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), limit))]


def _load_wav(root: Path, rel: str) -> tuple[torch.Tensor, int]:
    import soundfile as sf

    path = Path(rel) if Path(rel).is_absolute() else root / rel
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(data.T.copy()), rate  # (C, T)


def _cer_by_group(rows: list[dict], hyps: list[str], refs: list[str]) -> dict:
    """CER per eSpeak variant (timbre) and per language voice, from manifest voices named ``language+variant``,
    and per kind of sentence (the manifest's ``kind``: statement, question...).

    Returns ``{"variant": {name: {"cer", "utterances"}}, "language": {...}, "kind": {...}}``, each sorted by CER,
    worst first; a grouping is left out when the manifest lacks its field.
    """
    groups: dict[str, dict[str, list[int]]] = {"variant": {}, "language": {}, "kind": {}}
    for k, row in enumerate(rows):
        if row.get("kind"):
            groups["kind"].setdefault(str(row["kind"]), []).append(k)
        voice = row.get("voice")
        if not voice:
            continue
        language, _, variant = voice.partition("+")
        groups["variant"].setdefault(variant or "(default)", []).append(k)
        groups["language"].setdefault(language, []).append(k)
    out = {}
    for key, members in groups.items():
        if not members:
            continue
        rates = {
            name: {"cer": round(cer([hyps[k] for k in idx], [refs[k] for k in idx]), 4), "utterances": len(idx)}
            for name, idx in members.items()
        }
        out[key] = dict(sorted(rates.items(), key=lambda item: -item[1]["cer"]))
    return out


@torch.inference_mode()
def evaluate_codec(
    tokenizer: str,
    manifest: str,
    decoder: str | None = None,
    vocoder: str | None = None,
    judge: str | None = None,
    out: str = "runs/codec-eval",
    max_utterances: int | None = 100,
    steps: int | None = None,
    guidance: float | None = None,
    temperature: float | None = None,
    examples: int = 3,
    num_threads: int = 2,
    seed: int = 0,
    unseen_only: bool = True,
) -> dict:
    """Measure a tokenizer (+ decoder + vocoder) on a read-speech manifest (use the test split: unseen voices).

    Args:
        tokenizer: directory of a saved ``SpeechTokenizer`` (``config.yaml`` + ``model.safetensors``).
        manifest: JSONL with ``audio`` (relative to the corpus root) and ``text``; e.g. ``DIR/read/test.jsonl``.
        decoder: directory of a saved ``SpeechDecoder``; without it only the tokenizer figures are measured.
        vocoder: directory of a saved ``Vocoder``, or ``griffin-lim`` for the untrained baseline.
        judge: directory of a saved ``CTCRecognizer``; default: the tokenizer's own CTC head reads the audio.
        out: output directory.
        max_utterances: a random sample of N utterances, the same for a given ``seed`` (None: all).
        steps, guidance, temperature: override the decoder's Euler steps / guidance weight / noise scale.
        examples: utterances written as WAV + PNG.
        num_threads: torch CPU threads (real-time factors depend on it).
        seed: seed of the utterance sample and of the decoder noise.
        unseen_only: keep only rows with ``unseen_voice: true`` when the manifest has that field.

    Returns:
        The report dict (also written to ``OUT/report.json``; the readings of every utterance go to
        ``OUT/utterances.jsonl``). Where the manifest names voices, ``tokenizer_cer_by_voice`` breaks the CER
        down by eSpeak variant and language voice; where it has ``kind``, ``tokenizer_cer_by_kind`` by kind of sentence.
    """
    import soundfile as sf

    from lightning_modules.decoder_module import save_spectrogram_png
    from moss_components.asr.recognizer import load_recognizer
    from moss_components.data.manifest import corpus_root
    from moss_components.decoders import load_decoder
    from moss_components.tokenizers import load_speech_tokenizer
    from moss_components.vocoders import GriffinLimVocoder, load_vocoder

    with torch_threads(num_threads):  # real-time factors depend on it; restored afterwards
        out_dir = Path(out)
        (out_dir / "examples").mkdir(parents=True, exist_ok=True)
        manifest_path = Path(manifest)
        root = corpus_root(manifest_path)
        rows = _read_manifest(manifest_path, max_utterances, unseen_only, seed)

        tok = load_speech_tokenizer(tokenizer)
        dec = load_decoder(decoder) if decoder else None
        if dec is not None:
            if vocoder in (None, "griffin-lim"):
                m = dec.mel
                voc = GriffinLimVocoder(m.sample_rate, m.n_mels, m.n_fft, m.hop_length)
            else:
                voc = load_vocoder(vocoder)
        else:
            voc = None
        judge_model = load_recognizer(judge) if judge else None
        if judge_model is None and not hasattr(tok, "transcribe"):
            raise ValueError(f"{type(tok).__name__} has no CTC head to read audio with: pass --judge DIR")
        read = judge_model.transcribe if judge_model is not None else tok.transcribe

        counts = torch.zeros(tok.codebook_size, dtype=torch.long)
        refs, hyp_orig, hyp_resynth, hyp_copy = [], [], [], []
        audio_s = enc_s = dec_s = 0.0
        for i, row in enumerate(rows):
            wav, rate = _load_wav(root, row["audio"])
            text = normalize_text(row["text"])
            refs.append(text)
            t0 = time.perf_counter()
            enc = tok.encode([wav], rate)  # a list: one (C, T) clip, downmixed if stereo
            enc_s += time.perf_counter() - t0
            clip = tok.prepare([wav], rate)[0][0]
            audio_s += clip.numel() / tok.sample_rate
            ids = enc.ids[..., : int(enc.lengths[0])]
            first = ids if ids.ndim == 2 else ids[:, 0]
            counts += torch.bincount(first.flatten(), minlength=tok.codebook_size)
            hyp_orig.append(read(clip, tok.sample_rate)[0])
            if dec is None:
                continue
            t0 = time.perf_counter()
            mel = dec.decode(first, steps=steps, guidance=guidance, temperature=temperature, seed=seed)
            audio = voc(mel)[0]
            dec_s += time.perf_counter() - t0
            hyp_resynth.append(read(audio, voc.sample_rate)[0])
            if voc.trainable:  # vocoder alone on the ground-truth mel: how much of the loss is the vocoder's
                gt_mel = voc.mel(clip[None])
                hyp_copy.append(read(voc(gt_mel)[0], voc.sample_rate)[0])
            if i < examples:
                name = str(row.get("id", i))
                sf.write(out_dir / "examples" / f"{name}_orig.wav", clip.numpy(), tok.sample_rate)
                sf.write(out_dir / "examples" / f"{name}_resynth.wav", audio.clamp(-1, 1).numpy(), voc.sample_rate)
                target = dec.mel(clip[None])[0, :, : mel.shape[-1]]
                save_spectrogram_png(
                    out_dir / "examples" / f"{name}.png",
                    [target, mel[0]],
                    [f"original: {text}", f"resynthesized: {hyp_resynth[-1]}"],
                )

        used = counts > 0
        p = counts[used].float() / counts.sum()
        report = {
            "tokenizer": tokenizer,
            "decoder": decoder,
            "vocoder": vocoder or ("griffin-lim" if dec is not None else None),
            "judge": judge or "tokenizer CTC head",
            "manifest": str(manifest_path),
            "utterances": len(rows),
            "unseen_voices_only": unseen_only,
            "audio_seconds": round(audio_s, 2),
            "num_threads": num_threads,
            "tokenizer_cer": round(cer(hyp_orig, refs), 4),
            "codebook_usage": round(float(used.float().mean()), 4),
            "codebook_perplexity": round(float((-(p * p.log()).sum()).exp()), 1),
            "frame_rate_hz": tok.frame_rate,
            "codebook_size": tok.codebook_size,
            "encode_rtf": round(enc_s / max(audio_s, 1e-9), 4),
        }
        if dec is not None:
            report["resynth_cer"] = round(cer(hyp_resynth, refs), 4)
            if hyp_copy:
                report["vocoder_copy_synthesis_cer"] = round(cer(hyp_copy, refs), 4)
            report["decode_rtf"] = round(dec_s / max(audio_s, 1e-9), 4)
            report["decoder_steps"] = steps if steps is not None else getattr(dec, "steps", None)
            report["decoder_guidance"] = guidance if guidance is not None else getattr(dec, "guidance", None)
            report["decoder_temperature"] = (
                temperature if temperature is not None else getattr(dec, "temperature", None)
            )
        by_group = _cer_by_group(rows, hyp_orig, refs)
        by_voice = {key: by_group[key] for key in ("variant", "language") if key in by_group}
        if by_voice:
            report["tokenizer_cer_by_voice"] = by_voice
        if "kind" in by_group:
            report["tokenizer_cer_by_kind"] = by_group["kind"]
        report["samples"] = [
            {"ref": r, "tokenizer": h, **({"resynth": hyp_resynth[k]} if k < len(hyp_resynth) else {})}
            for k, (r, h) in enumerate(zip(refs[:examples], hyp_orig[:examples]))
        ]
        (out_dir / "report.json").write_text(json.dumps(report, indent=2))
        with open(out_dir / "utterances.jsonl", "w") as f:  # for error analysis: every reading, not just the rates
            for k, (row, ref, hyp) in enumerate(zip(rows, refs, hyp_orig)):
                line = {"id": row.get("id", k), "voice": row.get("voice"), "ref": ref, "tokenizer": hyp}
                if k < len(hyp_resynth):
                    line["resynth"] = hyp_resynth[k]
                f.write(json.dumps(line) + "\n")
        print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))
        return report
