"""Training stage of the speech decoder (ids -> mel) and the vocoder (mel -> wav), together or separately.

Batches are ``{"wav": (B, T), "wav_lengths": (B,), ...}`` from ``lightning_modules.data.AudioTextDataModule``. The
decoder's targets are the ids of a frozen tokenizer (given as a module or loaded from ``tokenizer_path``) and the
log-mel of the same audio; the vocoder learns on random crops of ground-truth mels.

Logged: ``train/fm_loss``, ``train/mel_l1`` (one-step read-out of the decoder's condition, normalized units),
``train/stft_loss``, ``train/voc_mel_l1`` (log-mel L1 of vocoder output); in validation the same plus
``val/decoded_mel_l1`` (full Euler decode vs. target). Audio samples and spectrogram PNGs go to the logger:
TensorBoard's ``add_audio``/``add_figure``, or files under ``<log_dir>/samples/step_<n>/`` for other loggers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable

from moss_components.decoders.base import SpeechDecoder
from moss_components.optim import warmup_cosine_schedule
from moss_components.tokenizers import SpeechTokenizer, load_speech_tokenizer
from moss_components.tokenizers.pretrained import save_pretrained
from moss_components.vocoders import load_vocoder
from moss_components.vocoders.base import Vocoder
from moss_components.vocoders.losses import MultiResolutionSTFTLoss

__all__ = ["DecoderModule", "save_spectrogram_png"]

log = logging.getLogger(__name__)


def _default_optimizer(params):
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)


def save_spectrogram_png(path: str | Path, mels: list[torch.Tensor], titles: list[str]) -> Path:
    """Write log-mels ``(n_mels, F)`` one above the other to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(mels), 1, figsize=(8, 2.2 * len(mels)), squeeze=False)
    for ax, m, title in zip(axes[:, 0], mels, titles):
        ax.imshow(m.detach().float().cpu().numpy(), origin="lower", aspect="auto", cmap="magma")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("mel band")
    axes[-1, 0].set_xlabel("frame")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


class DecoderModule(LightningModule):
    """Trains a :class:`SpeechDecoder` and/or a :class:`Vocoder`.

    Args:
        decoder: the decoder (``None`` trains the vocoder only).
        vocoder: the vocoder (``None`` trains the decoder only; also used to render validation audio).
        tokenizer: a frozen tokenizer that makes the decoder's input ids; or give ``tokenizer_path``.
        tokenizer_path: directory written by ``save_pretrained`` (``config.yaml`` + ``model.safetensors``).
        vocoder_path: a saved vocoder to use instead of ``vocoder`` (e.g. to train the decoder alone).
        train_decoder, train_vocoder: which parts learn.
        optimizer: optimizer factory over the trained parameters.
        warmup_steps, min_lr_ratio: linear warm-up, then cosine decay to ``min_lr_ratio`` of the peak at the run's
            last step (``trainer.max_steps``): a run cut by its time budget mid-schedule never anneals, so size
            ``max_steps`` to the budget.
        vocoder_segment_frames: mel frames per vocoder training crop.
        stft_weight, mel_weight: vocoder loss weights (multi-resolution STFT, log-mel L1).
        sample_items: validation items rendered to audio + PNG (first validation batch).
        decoder_export_dir, vocoder_export_dir: where ``save_pretrained`` writes each part at the end of fit.
    """

    def __init__(
        self,
        decoder: SpeechDecoder | None = None,
        vocoder: Vocoder | None = None,
        tokenizer: SpeechTokenizer | None = None,
        tokenizer_path: str | None = None,
        vocoder_path: str | None = None,
        train_decoder: bool = True,
        train_vocoder: bool = True,
        optimizer: OptimizerCallable = _default_optimizer,
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.1,
        vocoder_segment_frames: int = 32,
        stft_weight: float = 1.0,
        mel_weight: float = 1.0,
        sample_items: int = 2,
        decoder_export_dir: str | None = None,
        vocoder_export_dir: str | None = None,
    ) -> None:
        super().__init__()
        if tokenizer is None and tokenizer_path is not None:
            tokenizer = load_speech_tokenizer(tokenizer_path)
        if vocoder is None and vocoder_path is not None:
            vocoder = load_vocoder(vocoder_path).train(train_vocoder)  # loaders return eval mode
        if train_decoder and decoder is None:
            raise ValueError("train_decoder=True needs a decoder")
        if train_decoder and tokenizer is None:
            raise ValueError("training the decoder needs a tokenizer (tokenizer or tokenizer_path) to make its ids")
        if train_vocoder and (vocoder is None or not vocoder.trainable):
            raise ValueError(f"train_vocoder=True needs a trainable vocoder, got {type(vocoder).__name__}")
        if decoder is not None and tokenizer is not None and decoder.codebook_size < tokenizer.codebook_size:
            raise ValueError(
                f"decoder codebook_size {decoder.codebook_size} < tokenizer codebook_size {tokenizer.codebook_size}"
            )
        if decoder is not None and vocoder is not None:
            a, b = decoder.mel, vocoder.mel
            ours = (a.sample_rate, a.n_fft, a.hop_length, a.n_mels)
            theirs = (b.sample_rate, b.n_fft, b.hop_length, b.n_mels)
            if ours != theirs:
                raise ValueError(f"decoder mel (rate, n_fft, hop, n_mels) {ours} != vocoder mel {theirs}")
        self.decoder = decoder
        self.vocoder = vocoder
        self.tokenizer = tokenizer
        if tokenizer is not None:
            tokenizer.requires_grad_(False)
        self.train_decoder, self.train_vocoder = train_decoder, train_vocoder
        self.optimizer_factory = optimizer
        self.warmup_steps, self.min_lr_ratio = warmup_steps, min_lr_ratio
        self.segment = vocoder_segment_frames
        self.stft_weight, self.mel_weight = stft_weight, mel_weight
        self.stft_loss = MultiResolutionSTFTLoss()
        self.sample_items = sample_items
        self.decoder_export_dir, self.vocoder_export_dir = decoder_export_dir, vocoder_export_dir

    # -- pieces ------------------------------------------------------------------------------------------------
    def _decoder_losses(self, batch) -> dict[str, torch.Tensor]:
        self.tokenizer.eval()
        # float32 even under bf16-mixed: the ids must be the ones the tokenizer gives at inference
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            tok = self.tokenizer._encode(batch["wav"], batch["wav_lengths"])
            mel = self.decoder.mel(batch["wav"])
        return self.decoder.loss(tok.ids, tok.lengths.clamp_min(1), mel)

    def _vocoder_losses(self, batch) -> dict[str, torch.Tensor]:
        wav, lengths = batch["wav"], batch["wav_lengths"]
        hop = self.vocoder.hop_length
        with torch.no_grad():
            mel = self.vocoder.mel(wav)  # LogMel itself stays float32 under autocast
        k = min(self.segment, int(lengths.min()) // hop)
        k = max(k, 1)
        mels, wavs = [], []
        for i in range(wav.shape[0]):
            max_start = max(0, int(lengths[i]) // hop - k)
            s = int(torch.randint(0, max_start + 1, ())) if self.training else 0
            mels.append(mel[i, :, s : s + k])
            seg = wav[i, s * hop : (s + k) * hop]
            wavs.append(torch.nn.functional.pad(seg, (0, k * hop - seg.numel())))
        mel_seg, wav_seg = torch.stack(mels), torch.stack(wavs)
        pred = self.vocoder(mel_seg)
        stft = self.stft_loss(pred, wav_seg)
        mel_l1 = (self.vocoder.mel(pred) - self.vocoder.mel(wav_seg)).abs().mean()
        return {"loss": self.stft_weight * stft + self.mel_weight * mel_l1, "stft_loss": stft, "voc_mel_l1": mel_l1}

    def _step(self, batch, prefix: str):
        bs = batch["wav"].shape[0]
        total = batch["wav"].new_zeros(())
        if self.train_decoder or (prefix == "val" and self.decoder is not None and self.tokenizer is not None):
            d = self._decoder_losses(batch)
            total = total + d["loss"]
            self.log(f"{prefix}/fm_loss", d["fm_loss"], prog_bar=True, batch_size=bs)
            self.log(f"{prefix}/mel_l1", d["mu_l1"], batch_size=bs)
        if self.train_vocoder or (prefix == "val" and self.vocoder is not None and self.vocoder.trainable):
            v = self._vocoder_losses(batch)
            total = total + v["loss"]
            self.log(f"{prefix}/stft_loss", v["stft_loss"], prog_bar=True, batch_size=bs)
            self.log(f"{prefix}/voc_mel_l1", v["voc_mel_l1"], batch_size=bs)
        self.log(f"{prefix}/loss", total, batch_size=bs)
        return total

    # -- Lightning hooks ---------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")
        if batch_idx == 0 and self.sample_items and self.decoder is not None and self.tokenizer is not None:
            self._write_samples(batch)

    @torch.no_grad()
    def _write_samples(self, batch) -> None:
        n = min(self.sample_items, batch["wav"].shape[0])
        wav, lengths = batch["wav"][:n], batch["wav_lengths"][:n]
        tok = self.tokenizer._encode(wav, lengths)
        mel_hat = self.decoder.decode(tok.ids, tok.lengths.clamp_min(1))
        target = self.decoder.mel(wav)[..., : mel_hat.shape[-1]]
        frames = tok.lengths * self.decoder.frames_per_token
        l1 = torch.stack([(mel_hat[i, :, : frames[i]] - target[i, :, : frames[i]]).abs().mean() for i in range(n)])
        self.log("val/decoded_mel_l1", l1.mean(), batch_size=n)
        audio = self.vocoder(mel_hat).float().cpu() if self.vocoder is not None else None
        step = self.global_step
        experiment = getattr(self.logger, "experiment", None) if self.logger is not None else None
        for i in range(n):
            f = int(frames[i])
            mels = [target[i, :, :f], mel_hat[i, :, :f]]
            titles = [f"target {batch['id'][i]}", f"decoded (mel L1 {float(l1[i]):.3f})"]
            if hasattr(experiment, "add_audio"):
                import matplotlib

                matplotlib.use("Agg")
                png = save_spectrogram_png(Path(self._sample_dir(step)) / f"{i}.png", mels, titles)
                import matplotlib.pyplot as plt

                fig = plt.figure()
                plt.imshow(plt.imread(png))
                plt.axis("off")
                experiment.add_figure(f"samples/{i}/spectrogram", fig, step)
                if audio is not None:
                    clip = audio[i, : f * self.vocoder.hop_length]
                    experiment.add_audio(f"samples/{i}/audio", clip[None], step, sample_rate=self.vocoder.sample_rate)
            else:
                out = Path(self._sample_dir(step))
                save_spectrogram_png(out / f"{i}.png", mels, titles)
                if audio is not None:
                    import soundfile as sf

                    clip = audio[i, : f * self.vocoder.hop_length].clamp(-1, 1).numpy()
                    sf.write(out / f"{i}.wav", clip, self.vocoder.sample_rate)

    def _sample_dir(self, step: int) -> str:
        base = self.logger.log_dir if self.logger is not None and self.logger.log_dir else self.trainer.default_root_dir
        return str(Path(base) / "samples" / f"step_{step}")

    def configure_optimizers(self):
        params = []
        if self.train_decoder:
            params += list(self.decoder.parameters())
        if self.train_vocoder:
            params += list(self.vocoder.parameters())
        optimizer = self.optimizer_factory(params)
        return warmup_cosine_schedule(
            optimizer, self.trainer.estimated_stepping_batches, self.warmup_steps, self.min_lr_ratio
        )

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Clip the decoder's and the vocoder's gradients each on its own.

        Trained together under one clip, the vocoder's spectral-loss gradients (norm 1-4 late in the tiny run,
        against the decoder's 0.2) would set the scale of the decoder's steps too.
        """
        if not gradient_clip_val or not (self.train_decoder and self.train_vocoder):
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        for part in (self.decoder, self.vocoder):
            grads = [p for p in part.parameters() if p.grad is not None]
            if gradient_clip_algorithm == "value":
                torch.nn.utils.clip_grad_value_(grads, gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_norm_(grads, gradient_clip_val)

    def on_fit_end(self) -> None:
        if not self.trainer.is_global_zero:
            return
        if self.decoder_export_dir and self.decoder is not None:
            log.info("exported decoder to %s", save_pretrained(self.decoder, self.decoder_export_dir))
        if self.vocoder_export_dir and self.vocoder is not None:
            log.info("exported vocoder to %s", save_pretrained(self.vocoder, self.vocoder_export_dir))
