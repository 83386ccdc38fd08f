"""LoRA trainer speed on the toy model: default settings vs a naive loop, each lever alone, and under load.

    python bench/train_speed.py [--window 3] [--rounds 3] [--load-rounds 2] [--compile] [--source-px 64]

Every configuration trains the ghibli preset (rank 4 on attention, batch 1 x 4 accumulation, cosine schedule, no
trigger word; lr 1e-3 without warm-up, so that a few steps change the loss) on the same 64 toy images, each in
its own process. The processes load once, then take turns: each round every configuration runs ``--window``
updates while the others wait (A B C ... A B C ...), so a machine shared with other work slows them alike; the
median window is printed. The naive loop, written below, does what diffusers' train_text_to_image_lora.py does:
one image per forward, the VAE and the text encoder for every image, torch's default threads and AdamW. "base"
is our trainer with every lever off, "+ lever" turns one on, "default" is the trainer's defaults. The levers:
fused accumulation (micro_batch_size=0), the latent and text caches, the thread policy (training/runs/threads.py),
fused AdamW and a channels-last UNet (accel.FUSED_ADAMW_DEVICES, trainer.CHANNELS_LAST_DEVICES), and with --compile
torch.compile (compile_unet). Under load: the default with and without the thread policy, alone and while a
process generates images through the Generate tab's code, in turns. Final loss: the denoising MSE of the naive
and the default LoRA on 32 held-out toy images with fixed noise. Target: default >= 2x the naive loop at a final
loss no higher.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SAME = {"trigger_word": "", "learning_rate": "1e-3", "lr_warmup_steps": "0"}  # the naive loop's too
GHIBLI = {**SAME, "sample_steps": "0", "checkpointing_steps": "0", "validation_steps": "0",
          "sample_inference_steps": "1"}
LEVERS_OFF = {"micro_batch_size": "1", "cache_latents": "false", "cache_text_embeddings": "false"}
# name: (settings, other levers on: "threads" (the thread policy), "adamw" (fused), "channels_last")
ALL = ("threads", "adamw", "channels_last")
CONFIGS = {
    "default": ({}, ALL),
    "base (levers off)": (LEVERS_OFF, ()),
    "+ fused accumulation": ({**LEVERS_OFF, "micro_batch_size": "0"}, ()),
    "+ latent/text caches": ({**LEVERS_OFF, "cache_latents": "true", "cache_text_embeddings": "true"}, ()),
    "+ thread policy": (LEVERS_OFF, ("threads",)),
    "+ fused AdamW": (LEVERS_OFF, ("adamw",)),
    "+ channels-last UNet": (LEVERS_OFF, ("channels_last",)),
    "default - thread policy": ({}, ("adamw", "channels_last")),
    "default + torch.compile": ({"compile_unet": "true"}, ALL),
}
WARMUP = 2  # untimed updates before the first window (torch.compile compiles in the first)
PROMPT = "a red circle on a white background"
TAG = "BENCH"  # marks the children's lines to the parent on stdout


# ---- the children -------------------------------------------------------------------------------------------
class Gate:
    """In a child: wait for the parent's word before each window of updates, then print the window's seconds."""

    def __init__(self, window: int, steps: int):
        self.window, self.steps, self.start = window, steps, 0.0

    def _wait(self) -> None:
        print(f"{TAG} ready", flush=True)
        sys.stdin.readline()

    def before(self, step: int) -> None:
        if step >= WARMUP and (step - WARMUP) % self.window == 0:
            self._wait()
            self.start = time.perf_counter()

    def after(self, step: int) -> None:
        if step >= WARMUP and (step - WARMUP) % self.window == self.window - 1:
            print(f"{TAG} seconds {time.perf_counter() - self.start}", flush=True)
            if step == self.steps - 1:
                self._wait()  # saving waits until every window of every process is timed


def run_trainer(data: Path, out: Path, gate: Gate, settings: dict[str, str], levers: list[str]) -> None:
    """``python -m training.lora`` as the launcher starts it; without the policy, as an in-process caller."""
    if "threads" in levers:  # now, before the imports below load torch
        from training.runs.threads import use_thread_policy

        use_thread_policy()
    from training.lora import trainer
    from training.lora.cli import main
    from training.runs import accel
    from training.lora.trainer import LoraRun

    accel.FUSED_ADAMW_DEVICES = accel.FUSED_ADAMW_DEVICES if "adamw" in levers else ()
    trainer.CHANNELS_LAST_DEVICES = trainer.CHANNELS_LAST_DEVICES if "channels_last" in levers else ()
    update = LoraRun._update

    def gated(self, step: int) -> float:
        gate.before(step)
        loss = update(self, step)
        gate.after(step)
        return loss

    LoraRun._update = gated
    sets = [x for key, value in {**GHIBLI, **settings}.items() for x in ("--set", f"{key}={value}")]
    code = main(["--preset", "ghibli", "--data", str(data), "--output", str(out), "--profile", "tiny",
                 "--max-steps", str(gate.steps), *sets])
    if code:
        raise SystemExit(code)


def run_naive(data: Path, out: Path, gate: Gate) -> None:
    """The diffusers example's loop: per image the VAE, the text encoder, the UNet; AdamW; torch's threads."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, StableDiffusionPipeline
    from diffusers.optimization import get_scheduler
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from PIL import Image
    from torchvision import transforms

    from pipelines.models.registry import TOY_SD
    from training.lora.data import read_captioned
    from training.lora.settings import resolve_settings

    s = resolve_settings("ghibli", SAME)
    torch.manual_seed(s.seed)
    pipe = StableDiffusionPipeline.from_pretrained(TOY_SD, safety_checker=None, requires_safety_checker=False)
    unet, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=s.rank, lora_alpha=s.alpha, init_lora_weights="gaussian",
                                target_modules=s.target_modules))
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=s.learning_rate, betas=(s.adam_beta1, s.adam_beta2),
                                  weight_decay=s.weight_decay, eps=s.adam_epsilon)
    lr_scheduler = get_scheduler(s.lr_scheduler, optimizer, num_warmup_steps=s.lr_warmup_steps,
                                 num_training_steps=gate.steps)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    size = unet.config.sample_size * pipe.vae_scale_factor
    transform = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size),
                                    transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                                    transforms.Normalize([0.5], [0.5])])
    examples = read_captioned(data)
    ids = tokenizer([e.caption for e in examples], padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids  # tokenized once, as the example does
    order = torch.randperm(len(examples)).tolist()
    unet.train()
    for step in range(gate.steps):
        gate.before(step)
        for micro in range(s.gradient_accumulation_steps):
            i = order[(step * s.gradient_accumulation_steps + micro) % len(order)]
            pixels = transform(Image.open(examples[i].image).convert("RGB"))[None]
            latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor
            noise = torch.randn_like(latents)
            t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (1,))
            noisy = noise_scheduler.add_noise(latents, noise, t)
            hidden = text_encoder(ids[i:i + 1], return_dict=False)[0]
            pred = unet(noisy, t, hidden, return_dict=False)[0]
            loss = F.mse_loss(pred.float(), noise.float(), reduction="mean") / s.gradient_accumulation_steps
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
        gate.after(step)
    (out / "final").mkdir(parents=True)
    StableDiffusionPipeline.save_lora_weights(out / "final", unet_lora_layers=convert_state_dict_to_diffusers(
        get_peft_model_state_dict(unet)), safe_serialization=True)
    (out / "report.json").write_text(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                                 / 1024}))


def run_generator() -> None:
    """Images in a loop through the Generate tab's code, as the app serves them (no thread policy)."""
    from dataclasses import replace

    from pipelines.generate.text_to_image import defaults_for, generate
    from pipelines.models.profile import choose_profile
    from pipelines.models.runtime import Runtime

    runtime = Runtime(profile=choose_profile("tiny"))
    settings = replace(defaults_for("tiny"), prompt=PROMPT, seed=1)
    generate(runtime, settings)
    print(f"{TAG} ready", flush=True)
    while True:
        generate(runtime, settings)


# ---- the parent ---------------------------------------------------------------------------------------------
def clean_env() -> dict[str, str]:
    """This environment without OpenMP settings: what a process started by hand gets."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "KMP_"))}


class Child:
    """A bench process, started now and held at its gate until told to run a window."""

    def __init__(self, tmp: Path, name: str, args: list[str]):
        self.name, self.out = name, Path(tempfile.mkdtemp(prefix="run-", dir=tmp))
        self.log = self.out.with_suffix(".log")
        with self.log.open("w") as log:
            self.proc = subprocess.Popen([sys.executable, __file__, *args, "--out", str(self.out)], cwd=ROOT,
                                         env=clean_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=log, text=True)
        self._expect("ready")

    def _expect(self, word: str) -> list[str]:
        for line in self.proc.stdout:
            if line.startswith(TAG):
                parts = line.split()[1:]
                assert parts[0] == word, (self.name, parts)
                return parts
        raise SystemExit(f"{self.name} stopped; see {self.log}:\n{self.log.read_text()[-3000:]}")

    def _go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def window(self) -> float:
        """Seconds of one window of updates."""
        self._go()
        seconds = float(self._expect("seconds")[1])
        self._expect("ready")
        return seconds

    def finish(self) -> dict:
        """Let it run the rest ungated, save and end; its report.json."""
        self.proc.stdin.close()  # every later wait at the gate returns at once
        if self.proc.wait():
            raise SystemExit(f"{self.name} failed; see {self.log}")
        return json.loads((self.out / "report.json").read_text())


def start(tmp: Path, name: str, data: Path, window: int, steps: int) -> Child:
    common = ["--data", str(data), "--window", str(window), "--steps", str(steps)]
    if name == "naive":
        return Child(tmp, name, ["--child", "naive", *common])
    settings, levers = CONFIGS[name]
    return Child(tmp, name, ["--child", "trainer", *common, "--settings", json.dumps(settings),
                             "--levers", ",".join(levers)])


def final_loss(lora_dir: Path | None, data: Path) -> float:
    """Denoising MSE of the toy UNet (with the LoRA) on held-out images, fixed noise and timesteps."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    from pipelines.models.registry import TOY_SD
    from training.lora.data import read_captioned
    from training.lora.latents import encode, load_square

    pipe = StableDiffusionPipeline.from_pretrained(TOY_SD, safety_checker=None, requires_safety_checker=False)
    if lora_dir:
        pipe.load_lora_weights(lora_dir, weight_name="pytorch_lora_weights.safetensors")
    examples = read_captioned(data)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    gen = torch.Generator().manual_seed(0)
    losses = []
    with torch.no_grad():
        latents = encode(pipe.vae, torch.stack([load_square(e.image, size) for e in examples]))
        hidden = pipe.encode_prompt([e.caption for e in examples], "cpu", 1, False)[0]
        for _ in range(4):
            noise = torch.randn(latents.shape, generator=gen)
            t = torch.randint(sched.config.num_train_timesteps, (len(latents),), generator=gen)
            pred = pipe.unet(sched.add_noise(latents, noise, t), t, hidden).sample
            losses.append(F.mse_loss(pred, noise).item())
    return sum(losses) / len(losses)


def median_speed(window: int, seconds: list[float]) -> float:
    return window / statistics.median(seconds)


def bench(tmp: Path, data: Path, args) -> tuple[dict[str, float], dict[str, tuple[float, float]], dict[str, dict],
                                                dict[str, Path]]:
    """Steps/s of each configuration, (alone, loaded) steps/s, reports, and the naive and default LoRA folders."""
    names = ["naive", *(n for n in CONFIGS if args.compile or "compile" not in n)]
    loaded_names = ["default", "default - thread policy"]
    steps = WARMUP + args.rounds * args.window
    more = steps + 2 * args.load_rounds * args.window  # the load test's windows, and naive's equal steps
    children = {name: start(tmp, name, data, args.window, more if name in ("naive", *loaded_names) else steps)
                for name in names}  # one at a time: loading is heavy; the first default fills the latent cache
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name, child in children.items():
            seconds[name].append(child.window())
    reports = {name: child.finish() for name, child in children.items() if name not in ("naive", *loaded_names)}
    generator = Child(tmp, "generator", ["--child", "generate"])
    alone: dict[str, list[float]] = {name: [] for name in loaded_names}
    loaded: dict[str, list[float]] = {name: [] for name in loaded_names}
    try:
        for _ in range(args.load_rounds):
            for times, sig in ((alone, signal.SIGSTOP), (loaded, signal.SIGCONT)):
                generator.proc.send_signal(sig)
                for name in loaded_names:
                    times[name].append(children[name].window())
    finally:
        generator.proc.kill()
        generator.proc.wait()
    reports.update({name: children[name].finish() for name in ("naive", *loaded_names)})
    speed = {name: median_speed(args.window, s) for name, s in seconds.items()}
    under_load = {name: (median_speed(args.window, alone[name]), median_speed(args.window, loaded[name]))
                  for name in loaded_names}
    return speed, under_load, reports, {name: children[name].out / "final" for name in ("naive", "default")}


def main() -> None:
    from tests.conftest import render_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=3, help="updates per timed window")
    parser.add_argument("--rounds", type=int, default=3, help="windows per configuration (median printed)")
    parser.add_argument("--load-rounds", type=int, default=2, help="alone/loaded window pairs in the load test")
    parser.add_argument("--compile", action="store_true", help="also default + torch.compile (minutes when cold)")
    parser.add_argument("--source-px", type=int, default=64, help="side of the dataset's JPEG photos")
    parser.add_argument("--child", choices=("trainer", "naive", "generate"), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--settings", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--levers", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child == "trainer":
        return run_trainer(args.data, args.out, Gate(args.window, args.steps), json.loads(args.settings),
                           args.levers.split(","))
    if args.child == "naive":
        return run_naive(args.data, args.out, Gate(args.window, args.steps))
    if args.child == "generate":
        return run_generator()

    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="atelier-train-speed-"))
    os.environ.setdefault("ATELIER_CACHE", str(tmp / "cache"))
    data = render_dataset(tmp / "data", 64, size=args.source_px, suffix=".jpg")
    held_out = render_dataset(tmp / "held-out", 32, seed=1)
    print(f"64 toy JPEGs of {args.source_px} px, ghibli preset, {args.rounds} rounds of {args.window} updates, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    speed, under_load, reports, finals = bench(tmp, data, args)
    print("\n| configuration | steps/s | vs naive | vs base | peak RSS MB |\n|---|---|---|---|---|")
    for name, value in speed.items():
        print(f"| {name} | {value:.2f} | {value / speed['naive']:.2f}x | {value / speed['base (levers off)']:.2f}x | "
              f"{reports[name]['peak_rss_mb']:.0f} |")
    print(f"\nwhile another process generates {PROMPT!r} in a loop (as the app does, no thread policy):")
    for name, (alone, loaded) in under_load.items():
        print(f"  {name}: alone {alone:.2f} steps/s, loaded {loaded:.2f} steps/s = {loaded / alone:.2f}x")
    losses = {name: final_loss(path, held_out) for name, path in finals.items()}
    print(f"\nfinal loss on 32 held-out images (no LoRA {final_loss(None, held_out):.5f}): naive "
          f"{losses['naive']:.5f}, default {losses['default']:.5f} ({losses['default'] / losses['naive']:.3f}x)")
    print(f"default vs naive: {speed['default'] / speed['naive']:.2f}x (target >= 2x); "
          f"{(time.monotonic() - began) / 60:.1f} min, load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
