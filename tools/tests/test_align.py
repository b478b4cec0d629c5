#!/usr/bin/python3
"""Smoke test of tools/align.py on the tiny test model and a synthetic JSONL (a few steps).

    /usr/bin/python3 tools/tests/test_align.py

Checks that the loss on the response tokens goes down, that the output directory has the
model layout and a card recording the data digest and steps, and that the exported module
still honours the forward / forward_cached contract.
"""

import json
import os
import random
import subprocess
import sys
import tempfile
import unittest

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOOLS)

import torch  # noqa: E402

import align  # noqa: E402
import lm_files  # noqa: E402


def synthetic_pairs(n: int, seed: int = 3):
    """Templated arithmetic questions answered in one fixed style, like a target LLM would."""
    rng = random.Random(seed)
    for _ in range(n):
        a, b = rng.randrange(2, 50), rng.randrange(2, 50)
        yield {"prompt": f"Question: what is {a} plus {b}?",
               "response": f"The answer is {a + b}. So the final answer is {a + b}."}


class AlignSmokeTest(unittest.TestCase):
    def test_loss_goes_down_and_output_loads(self):
        torch.set_num_threads(1)
        with tempfile.TemporaryDirectory() as tmp:
            base = os.path.join(tmp, "tiny")
            subprocess.run([sys.executable, os.path.join(TOOLS, "make_test_model.py"), base],
                           check=True, stdout=subprocess.DEVNULL)
            data = os.path.join(tmp, "pairs.jsonl")
            with open(data, "w", encoding="utf-8") as f:
                for pair in synthetic_pairs(24):
                    f.write(json.dumps(pair) + "\n")
            out = os.path.join(tmp, "aligned")
            record = align.main(["--model", base, "--data", data, "--out", out, "--steps", "25",
                                 "--lr", "3e-3", "--batch", "8", "--threads", "1"])
            self.assertLess(record["loss_after"], 0.8 * record["loss_before"])

            for name in ("model.pt", "tokenizer.model", "tokenizer.json", "model.json"):
                self.assertTrue(os.path.exists(os.path.join(out, name)), name)
            card = lm_files.read_card(out)
            self.assertEqual(card["name"], "terse-tiny-test-aligned")
            self.assertEqual(card["alignment"]["steps"], 25)
            self.assertEqual(card["alignment"]["pairs"], 24)
            self.assertEqual(card["alignment"]["data_sha256"], lm_files.sha256_file(data))
            self.assertEqual(card["files"]["model.pt"]["sha256"],
                             lm_files.sha256_file(os.path.join(out, "model.pt")))

            model = torch.jit.load(os.path.join(out, "model.pt"))
            self.assertEqual(int(model.vocab_size), 512)
            ids = torch.tensor([[1, 40, 41, 42, 43, 44]])
            with torch.no_grad():
                full = model(ids)
                first, past = model.forward_cached(ids[:, :3], [])
                rest, _ = model.forward_cached(ids[:, 3:], past)
            self.assertLess((torch.cat([first, rest], 1) - full).abs().max().item(), 1e-4)
            base_model = torch.jit.load(os.path.join(base, "model.pt"))
            with torch.no_grad():
                self.assertGreater((base_model(ids) - full).abs().max().item(), 1e-3)

    def test_rejects_malformed_lines(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = os.path.join(tmp, "bad.jsonl")
            with open(data, "w", encoding="utf-8") as f:
                f.write(json.dumps({"prompt": "x"}) + "\n")
            with self.assertRaises(SystemExit):
                align.load_pairs(data)
            with open(data, "w", encoding="utf-8") as f:
                f.write('{"prompt": "a", "resp\n')
            with self.assertRaises(SystemExit):
                align.load_pairs(data)

    def test_leaves_out_a_last_line_still_being_written(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = os.path.join(tmp, "live.jsonl")
            with open(data, "w", encoding="utf-8") as f:
                f.write(json.dumps({"prompt": "p1", "response": "r1"}) + "\n")
                f.write(json.dumps({"prompt": "p2", "response": "r2"})[:17])
            self.assertEqual(align.load_pairs(data), [("p1", "r1")])


if __name__ == "__main__":
    unittest.main()
