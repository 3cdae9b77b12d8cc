"""A real Hugging Face Trainer run on a tiny GPT-2 built here (offline, CPU).

usage: kp_hf_trainer.py OUTDIR READY_FD

save_steps=20, max_steps=400; a callback sleeps 30 ms per step (a slow
step) and says "saved STEP TIME" on READY_FD after each checkpoint-N/ is
complete (on_save runs once trainer_state.json is written).  The Trainer's
tqdm bar goes to stderr (a file in the tests).
"""
from __future__ import annotations

import os
import sys
import time

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments  # noqa: E402


class Tokens(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 100_000

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        x = torch.randint(0, 64, (16,), generator=g)
        return {"input_ids": x, "labels": x}


class Pace(TrainerCallback):
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def on_step_end(self, args, state, control, **kw):
        time.sleep(0.03)

    def on_save(self, args, state, control, **kw):
        os.write(self.fd, f"saved {state.global_step} {time.time():.6f}\n".encode())


def main() -> int:
    out, fd = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=64, n_positions=32))
    args = TrainingArguments(output_dir=out, save_steps=20, max_steps=400, per_device_train_batch_size=4,
                             logging_steps=10, report_to=[], use_cpu=True, dataloader_num_workers=0,
                             save_strategy="steps")
    Trainer(model=model, args=args, train_dataset=Tokens(), callbacks=[Pace(fd)]).train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
