#!/usr/bin/python3
"""Tests of tools/export_hf.py that need no `transformers`: weight mapping, the terse
interface of the re-implemented architectures, and the tokenizer files.

    /usr/bin/python3 tools/tests/test_export_hf.py
"""

import json
import math
import os
import sys
import tempfile
import unittest

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)

import torch  # noqa: E402

import export_hf  # noqa: E402
from terse_lm import TerseLM  # noqa: E402

SPECIAL = {"bos_id": 1, "eos_id": 2, "pad_id": 3, "unk_id": 0}


def check_interface(test, module, vocab):
    """Scripted module: cached == full, right padding == unpadded, attributes present."""
    scripted = torch.jit.script(module.eval())
    for name in ("vocab_size", "max_context", "n_layer", "n_head", "d_model", "bos_id",
                 "pad_id"):
        test.assertIsInstance(getattr(scripted, name), int, name)
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(4, vocab, (2, 12), generator=g)
    with torch.no_grad():
        full = scripted(ids)
        a, past = scripted.forward_cached(ids[:, :5], [])
        b, past = scripted.forward_cached(ids[:, 5:], past)
        test.assertEqual(past[0].shape[1], module.n_head)
        test.assertEqual(past[0].shape[2], 12)
        test.assertLess((torch.cat([a, b], 1) - full).abs().max().item(), 1e-4)
        mask = torch.ones(2, 12, dtype=torch.long)
        mask[1, 8:] = 0
        padded = scripted(ids, mask)
        alone = scripted(ids[1:, :8])
        test.assertLess((padded[1, :8] - alone[0]).abs().max().item(), 1e-4)
    return scripted


class Gpt2Test(unittest.TestCase):
    def test_gpt2_weights_map_onto_the_same_function(self):
        torch.manual_seed(0)
        ref = TerseLM(vocab_size=97, max_context=32, n_layer=2, n_head=2, d_model=16).eval()
        sd = ref.state_dict()
        hf = {"transformer.wte.weight": sd["wte.weight"],
              "transformer.wpe.weight": sd["wpe.weight"],
              "transformer.ln_f.weight": sd["ln_f.weight"],
              "transformer.ln_f.bias": sd["ln_f.bias"],
              "lm_head.weight": sd["wte.weight"]}
        names = {"ln1": "ln_1", "ln2": "ln_2", "qkv": "attn.c_attn", "proj": "attn.c_proj",
                 "fc": "mlp.c_fc", "fc_out": "mlp.c_proj"}
        for i in range(2):
            for ours, theirs in names.items():
                w = sd[f"blocks.{i}.{ours}.weight"]
                # HF's Conv1D stores [in, out].
                hf[f"transformer.h.{i}.{theirs}.weight"] = w if ours.startswith("ln") else w.t()
                hf[f"transformer.h.{i}.{theirs}.bias"] = sd[f"blocks.{i}.{ours}.bias"]
        cfg = {"model_type": "gpt2", "vocab_size": 97, "n_positions": 32, "n_layer": 2,
               "n_head": 2, "n_embd": 16, "activation_function": "gelu",
               "layer_norm_epsilon": 1e-5, "bos_token_id": 1, "eos_token_id": 2}
        module = export_hf.build_from_config(cfg, 2048, SPECIAL)
        self.assertEqual(module.max_context, 32)
        module.load_state_dict(export_hf.convert_state(cfg, hf))
        ids = torch.randint(0, 97, (2, 10))
        with torch.no_grad():
            self.assertLess((module(ids) - ref(ids)).abs().max().item(), 1e-5)
        check_interface(self, module, 97)


def reference_llama(hf, cfg, ids):
    """A literal single-sequence Llama forward, written independently of export_hf."""
    d, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = d // nh
    eps = cfg["rms_norm_eps"]

    def rms(x, w):
        return w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)

    def rope(x, pos):  # x [heads, hd]; pairs (j, j + hd/2) rotate by pos * theta_j
        out = x.clone()
        for j in range(hd // 2):
            theta = pos / (cfg["rope_theta"] ** (2 * j / hd))
            c, s = math.cos(theta), math.sin(theta)
            out[:, j] = x[:, j] * c - x[:, j + hd // 2] * s
            out[:, j + hd // 2] = x[:, j + hd // 2] * c + x[:, j] * s
        return out

    x = hf["model.embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, hf[p + "input_layernorm.weight"])
        lin = lambda n, v: v @ hf[p + n + ".weight"].t() + hf.get(p + n + ".bias", 0)  # noqa
        q = lin("self_attn.q_proj", h).view(-1, nh, hd)
        k = lin("self_attn.k_proj", h).view(-1, nkv, hd)
        v = lin("self_attn.v_proj", h).view(-1, nkv, hd)
        q = torch.stack([rope(q[t], t) for t in range(len(ids))])
        k = torch.stack([rope(k[t], t) for t in range(len(ids))])
        outs = []
        for head in range(nh):
            kv = head // (nh // nkv)
            att = (q[:, head] @ k[:, kv].t()) / math.sqrt(hd)
            att = att + torch.triu(torch.full_like(att, float("-inf")), 1)
            outs.append(torch.softmax(att, -1) @ v[:, kv])
        x = x + torch.cat(outs, -1) @ hf[p + "self_attn.o_proj.weight"].t()
        h = rms(x, hf[p + "post_attention_layernorm.weight"])
        g = h @ hf[p + "mlp.gate_proj.weight"].t()
        u = h @ hf[p + "mlp.up_proj.weight"].t()
        x = x + (torch.nn.functional.silu(g) * u) @ hf[p + "mlp.down_proj.weight"].t()
    x = rms(x, hf["model.norm.weight"])
    return x @ hf["lm_head.weight"].t()


class LlamaTest(unittest.TestCase):
    def make(self, model_type, tie):
        cfg = {"model_type": model_type, "vocab_size": 61, "max_position_embeddings": 64,
               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
               "hidden_size": 16, "intermediate_size": 24, "rms_norm_eps": 1e-6,
               "rope_theta": 10000.0, "tie_word_embeddings": tie, "bos_token_id": 1,
               "eos_token_id": 2}
        g = torch.Generator().manual_seed(1)
        r = lambda *s: torch.randn(*s, generator=g) * 0.3  # noqa
        hf = {"model.embed_tokens.weight": r(61, 16), "model.norm.weight": 1 + r(16)}
        if not tie:
            hf["lm_head.weight"] = r(61, 16)
        for i in range(2):
            p = f"model.layers.{i}."
            hf[p + "input_layernorm.weight"] = 1 + r(16)
            hf[p + "post_attention_layernorm.weight"] = 1 + r(16)
            hf[p + "self_attn.q_proj.weight"] = r(16, 16)
            hf[p + "self_attn.k_proj.weight"] = r(8, 16)
            hf[p + "self_attn.v_proj.weight"] = r(8, 16)
            hf[p + "self_attn.o_proj.weight"] = r(16, 16)
            if model_type == "qwen2":
                hf[p + "self_attn.q_proj.bias"] = r(16)
                hf[p + "self_attn.k_proj.bias"] = r(8)
                hf[p + "self_attn.v_proj.bias"] = r(8)
            hf[p + "mlp.gate_proj.weight"] = r(24, 16)
            hf[p + "mlp.up_proj.weight"] = r(24, 16)
            hf[p + "mlp.down_proj.weight"] = r(16, 24)
        return cfg, hf

    def check(self, model_type, tie):
        cfg, hf = self.make(model_type, tie)
        module = export_hf.build_from_config(cfg, 2048, SPECIAL)
        self.assertEqual(module.max_context, 64)
        missing, unexpected = module.load_state_dict(export_hf.convert_state(cfg, hf),
                                                     strict=False)
        self.assertEqual([m for m in missing if "inv_freq" not in m], [])
        self.assertEqual(unexpected, [])
        if tie:
            hf["lm_head.weight"] = hf["model.embed_tokens.weight"]
        ids = torch.tensor([5, 9, 17, 33, 2, 60, 41])
        with torch.no_grad():
            got = module.eval()(ids.unsqueeze(0))[0]
        self.assertLess((got - reference_llama(hf, cfg, ids)).abs().max().item(), 1e-4)
        check_interface(self, module, 61)

    def test_llama_untied(self):
        self.check("llama", False)

    def test_qwen2_tied_with_qkv_bias(self):
        self.check("qwen2", True)

    def test_refuses_rope_scaling_and_unknown_families(self):
        cfg, _ = self.make("llama", False)
        cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0}
        with self.assertRaises(SystemExit):
            export_hf.build_from_config(cfg, 2048, SPECIAL)
        with self.assertRaises(SystemExit):
            export_hf.build_from_config({"model_type": "mamba"}, 2048, SPECIAL)


class TokenizerFilesTest(unittest.TestCase):
    def test_sentencepiece_unigram_becomes_terse_json(self):
        class FakeSpTokenizer:
            vocab_file = os.path.join(REPO, "tests", "fixtures", "tiny-lm", "tokenizer.model")
        with tempfile.TemporaryDirectory() as out:
            card = export_hf.write_tokenizer(FakeSpTokenizer(), out)
            self.assertEqual(card["format"], "terse-unigram-v1")
            with open(os.path.join(out, "tokenizer.json"), encoding="utf-8") as f:
                self.assertEqual(len(json.load(f)["pieces"]), 512)

    def test_bpe_tokenizer_is_saved_in_hf_format(self):
        class Backend:
            def save(self, path):
                with open(path, "w") as f:
                    f.write("{}")

        class FakeBpeTokenizer:
            backend_tokenizer = Backend()
            bos_token_id, eos_token_id, pad_token_id, unk_token_id = None, 50256, None, None

            def __len__(self):
                return 50257
        with tempfile.TemporaryDirectory() as out:
            card = export_hf.write_tokenizer(FakeBpeTokenizer(), out)
            self.assertEqual(card["format"], "hf-tokenizers")
            self.assertTrue(os.path.exists(os.path.join(out, "hf_tokenizer.json")))
            self.assertEqual(card["vocab_size"], 50257)


if __name__ == "__main__":
    torch.set_num_threads(1)
    unittest.main()
