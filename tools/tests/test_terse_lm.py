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
from terse_lm import TerseLM, script  # noqa: E402


class ContractTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.manual_seed(0)
        cls.model = script(TerseLM(vocab_size=300, max_context=64, n_layer=2, n_head=2,
                                   d_model=32))
        cls.ids = torch.randint(4, 300, (2, 20), generator=torch.Generator().manual_seed(1))

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
            self.assertEqual(len(past), 4)
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
