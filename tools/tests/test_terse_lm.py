#!/usr/bin/python3
"""The TorchScript contract of tools/terse_lm.py that the C++ scorer relies on.

    /usr/bin/python3 tools/tests/test_terse_lm.py
"""

import filecmp
import os
import subprocess
import sys
import tempfile
import unittest

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOOLS)

import torch  # noqa: E402

import lm_files  # noqa: E402
from terse_lm import TerseLM, copy_matches, script  # noqa: E402
from export import fit_copy_weights  # noqa: E402
from train import copy_ratio  # noqa: E402


class ContractTest(unittest.TestCase):
    copy_context = 0

    @classmethod
    def setUpClass(cls):
        torch.manual_seed(0)
        cls.model = script(TerseLM(vocab_size=300, max_context=64, n_layer=2, n_head=2,
                                   d_model=32, copy_context=cls.copy_context,
                                   copy_weight=[0.0, 0.2, 0.6, 0.9][:cls.copy_context + 1]
                                   if cls.copy_context else None))
        # Random ids with a repeated stretch, so the copy component has matches to use.
        cls.ids = torch.randint(4, 300, (2, 20), generator=torch.Generator().manual_seed(1))
        cls.ids[:, 12:18] = cls.ids[:, 2:8]

    def test_attributes(self):
        m = self.model
        self.assertEqual((m.vocab_size, m.max_context, m.n_layer, m.n_head, m.d_model),
                         (300, 64, 2, 2, 32))
        self.assertEqual((m.bos_id, m.eos_id, m.pad_id, m.unk_id), (1, 2, 3, 0))

    def test_cached_chunks_match_full_forward(self):
        with torch.no_grad():
            full = self.model(self.ids)
            self.assertEqual(full.dtype, torch.float32)
            self.assertEqual(tuple(full.shape), (2, 20, 300))
            past, parts = [], []
            for a, b in ((0, 1), (1, 7), (7, 20)):
                logits, past = self.model.forward_cached(self.ids[:, a:b], past)
                parts.append(logits)
            self.assertEqual(len(past), self.model.past_tensors)
            self.assertEqual(self.model.past_tensors, 4 + (1 if self.copy_context else 0))
            self.assertEqual(tuple(past[0].shape), (2, 2, 20, 16))
            self.assertLess((torch.cat(parts, 1) - full).abs().max().item(), 1e-4)

    def test_right_padding_is_invisible(self):
        mask = torch.ones(2, 20, dtype=torch.long)
        mask[1, 12:] = 0
        with torch.no_grad():
            padded = self.model(self.ids, mask)
            alone = self.model(self.ids[1:, :12])
            self.assertLess((padded[1, :12] - alone[0]).abs().max().item(), 1e-5)
            # Padding inside the past, then real tokens: positions continue from the real ones.
            _, past = self.model.forward_cached(self.ids, [], mask)
            more = torch.randint(4, 300, (2, 3), generator=torch.Generator().manual_seed(2))
            mask2 = torch.cat([mask, torch.ones(2, 3, dtype=torch.long)], 1)
            logits, _ = self.model.forward_cached(more, past, mask2)
            ref = self.model(torch.cat([self.ids[1:, :12], more[1:]], 1))[0, 12:]
            self.assertLess((logits[1] - ref).abs().max().item(), 1e-5)

    def test_saved_module_loads_without_machine_paths(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "m.pt")
            lm_files.save_scripted(self.model, path)
            with open(path, "rb") as f:
                self.assertNotIn(TOOLS.encode(), f.read())
            loaded = torch.jit.load(path)
            with torch.no_grad():
                self.assertTrue(torch.equal(loaded(self.ids), self.model(self.ids)))


class CopyContractTest(ContractTest):
    """The same contract with the copy component: its ids travel in past, padding included."""
    copy_context = 3

    def test_logits_are_normalised_log_probabilities(self):
        with torch.no_grad():
            logits = self.model(self.ids)
        self.assertLess(torch.logsumexp(logits, -1).abs().max().item(), 1e-4)


class CopyComponentTest(unittest.TestCase):
    def test_longest_match_and_what_followed_it(self):
        ids = torch.tensor([[5, 6, 7, 9, 6, 7, 8, 5, 6, 7]])
        match, weight, following = copy_matches(ids, torch.tensor([[9, 5, 0]]), 3)
        # Position 9 ends "5 6 7", which ended at 2 (then 9); "6 7" also ended at 5 (then 8).
        self.assertEqual(match.tolist(), [[3, 2, 0]])
        self.assertEqual(weight[0, 0].nonzero().view(-1).tolist(), [2])
        self.assertEqual(following[0, 2].item(), 9)
        self.assertAlmostEqual(weight[0, 0, 2].item(), 1.0)
        # Position 5 ends "6 7", seen ending at 2, where 9 followed.
        self.assertEqual(weight[0, 1].nonzero().view(-1).tolist(), [2])
        self.assertEqual(weight[0, 2].sum().item(), 0.0)

    def test_repeated_passage_costs_little_the_second_time(self):
        torch.manual_seed(0)
        plain = TerseLM(vocab_size=300, max_context=256, n_layer=2, n_head=2, d_model=32)
        copying = TerseLM(vocab_size=300, max_context=256, n_layer=2, n_head=2, d_model=32,
                          copy_context=4, copy_weight=[0.0, 0.1, 0.4, 0.7, 0.95])
        copying.load_state_dict(plain.state_dict())
        stream = torch.randint(4, 300, (400,), generator=torch.Generator().manual_seed(3))
        starts = torch.tensor([0, 200, 400])
        self.assertGreater(copy_ratio(plain, stream, starts, 1, span=100, docs=2), 0.8)
        self.assertLess(copy_ratio(script(copying), stream, starts, 1, span=100, docs=2), 0.3)

    def test_fitted_weights_follow_how_often_a_match_is_right(self):
        torch.manual_seed(0)
        model = TerseLM(vocab_size=300, max_context=128, n_layer=1, n_head=2, d_model=16).eval()
        rng = torch.Generator().manual_seed(4)
        pieces = []
        for _ in range(20):  # passages that come back, between fresh random text
            passage = torch.randint(4, 300, (30,), generator=rng)
            pieces += [passage, torch.randint(4, 300, (20,), generator=rng), passage]
        fit = fit_copy_weights(model, torch.cat(pieces).numpy(), 128, 3)
        self.assertEqual(fit["weights"][0], 0.0)
        self.assertGreater(fit["weights"][3], 0.8)
        self.assertGreater(fit["positions"][3], 100)


class ShippedModelTest(unittest.TestCase):
    """The shipped model sees repetition: a passage repeated in one window costs at most 0.3 of
    its first occurrence's mean NLL, on the exported module's own forward (the card records
    the figure on validation passages)."""

    def test_copy_ratio(self):
        import json
        import sentencepiece as spm
        model_dir = os.path.join(os.path.dirname(TOOLS), "models", "terse-small-en")
        module = torch.jit.load(os.path.join(model_dir, "model.pt"))
        sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, "tokenizer.model"))
        with open(os.path.join(TOOLS, "data", "ood_eval.txt"), encoding="utf-8") as f:
            ids = torch.tensor(sp.encode(f.read()), dtype=torch.long)
        starts = torch.tensor([0, 160, 320, len(ids)])
        ratio = copy_ratio(module, ids, starts, module.bos_id, span=150, docs=3)
        self.assertLessEqual(ratio, 0.3)
        with open(os.path.join(model_dir, "model.json"), encoding="utf-8") as f:
            self.assertLessEqual(json.load(f)["evaluation"]["copy_ratio"], 0.3)


class TestModelTest(unittest.TestCase):
    def test_make_test_model_is_deterministic(self):
        with tempfile.TemporaryDirectory() as tmp:
            for name in ("a", "b"):
                subprocess.run([sys.executable, os.path.join(TOOLS, "make_test_model.py"),
                                os.path.join(tmp, name)], check=True, stdout=subprocess.DEVNULL)
            names = ["model.pt", "tokenizer.model", "tokenizer.json", "model.json"]
            match, mismatch, errors = filecmp.cmpfiles(os.path.join(tmp, "a"),
                                                       os.path.join(tmp, "b"), names,
                                                       shallow=False)
            self.assertEqual(sorted(match), sorted(names), (mismatch, errors))


if __name__ == "__main__":
    torch.set_num_threads(1)
    unittest.main()
