"""The model-directory layout shared by every tool that writes one, and the tokenizer helpers.

A model directory holds:
  model.pt          TorchScript module (see terse_lm.py for its contract)
  tokenizer.model   the SentencePiece model: the reference tokenizer
  tokenizer.json    the same vocabulary in the form compressor/lm_tokenizer.cc reads
  model.json        the model card: architecture, training facts, perplexities, file digests
"""

import hashlib
import json
import os
import struct
from typing import Dict, List

# SentencePiece trainer options. Identity normalization, no dummy prefix and no whitespace
# folding make every piece stand for exact input bytes (U+2581 for a space), which the
# compressor needs to map kept tokens back to input offsets. Byte fallback lets any UTF-8 text
# tokenize without <unk>.
SPM_OPTIONS = dict(
    model_type="unigram",
    normalization_rule_name="identity",
    remove_extra_whitespaces=False,
    add_dummy_prefix=False,
    byte_fallback=True,
    split_digits=True,
    allow_whitespace_only_pieces=True,
    unk_id=0,
    bos_id=1,
    eos_id=2,
    pad_id=3,
    character_coverage=0.9995,
    max_sentence_length=8192,
    num_threads=1,  # one thread keeps training deterministic
)

# ModelProto.SentencePiece.Type values.
_PIECE_TYPES = {1: "normal", 2: "unknown", 3: "control", 4: "user_defined", 5: "unused",
                6: "byte"}


def train_tokenizer(input_path: str, model_prefix: str, vocab_size: int, cwd: str = ".",
                    **extra) -> str:
    """Trains with SPM_OPTIONS in `cwd`; pass relative names there, since the trainer records
    them in the model file. Returns the model path relative to `cwd`."""
    import sentencepiece as spm
    opts = dict(SPM_OPTIONS)
    opts.update(extra)
    old = os.getcwd()
    os.chdir(cwd)
    try:
        spm.SentencePieceTrainer.train(input=input_path, model_prefix=model_prefix,
                                       vocab_size=vocab_size, **opts)
    finally:
        os.chdir(old)
    return model_prefix + ".model"


def _varint(buf: bytes, pos: int):
    result = 0
    shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes):
    """Yields (field number, wire type, value) of one protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def read_spm_model(path: str) -> dict:
    """Parses the parts of a SentencePiece ModelProto the C++ encoder needs.

    Read from the protobuf directly (no generated module needed): pieces (field 1: piece,
    score, type), trainer spec (2) and normalizer spec (3).
    """
    with open(path, "rb") as f:
        buf = f.read()
    pieces: List[dict] = []
    trainer: Dict[int, object] = {}
    normalizer: Dict[int, object] = {}
    for field, _, value in _fields(buf):
        if field == 1:
            piece = {"piece": "", "score": 0.0, "type": "normal"}
            for f2, _, v2 in _fields(value):
                if f2 == 1:
                    piece["piece"] = v2.decode("utf-8")
                elif f2 == 2:
                    piece["score"] = struct.unpack("<f", v2)[0]
                elif f2 == 3:
                    piece["type"] = _PIECE_TYPES[v2]
            pieces.append(piece)
        elif field == 2:
            trainer = {f2: v2 for f2, _, v2 in _fields(value)}
        elif field == 3:
            normalizer = {f2: v2 for f2, _, v2 in _fields(value)}
    return {"pieces": pieces, "trainer": trainer, "normalizer": normalizer}


def write_tokenizer_json(model_path: str, out_path: str) -> dict:
    """Writes tokenizer.json: the vocabulary and the options the C++ encoder must honour."""
    import sentencepiece as spm
    proto = read_spm_model(model_path)
    norm = proto["normalizer"]
    trainer = proto["trainer"]
    # NormalizerSpec: 1 name, 2 precompiled_charsmap, 3 add_dummy_prefix,
    # 4 remove_extra_whitespaces, 5 escape_whitespaces. Defaults are true for 3-5.
    name = norm.get(1, b"").decode()
    if norm.get(2):
        raise ValueError("tokenizer has a normalization charsmap; terse needs identity")
    add_dummy_prefix = bool(norm.get(3, 1))
    remove_extra_ws = bool(norm.get(4, 1))
    escape_ws = bool(norm.get(5, 1))
    # TrainerSpec: 3 model_type (1 = unigram), 35 byte_fallback, 24 treat_whitespace_as_suffix.
    if trainer.get(3, 1) != 1:
        raise ValueError("only unigram tokenizers are supported")
    if trainer.get(24, 0):
        raise ValueError("treat_whitespace_as_suffix is not supported")
    sp = spm.SentencePieceProcessor(model_file=model_path)
    doc = {
        "format": "terse-unigram-v1",
        "model_type": "unigram",
        "normalization": name,
        "add_dummy_prefix": add_dummy_prefix,
        "remove_extra_whitespaces": remove_extra_ws,
        "escape_whitespaces": escape_ws,
        "byte_fallback": bool(trainer.get(35, 0)),
        "unk_id": sp.unk_id(),
        "bos_id": sp.bos_id(),
        "eos_id": sp.eos_id(),
        "pad_id": sp.pad_id(),
        "vocab_size": len(proto["pieces"]),
        "pieces": proto["pieces"],
    }
    assert doc["vocab_size"] == sp.get_piece_size()
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=0)
        f.write("\n")
    return doc


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_card(model_dir: str, card: dict) -> None:
    """Writes model.json with the sha256 of every other file of the directory."""
    files = {}
    for name in sorted(os.listdir(model_dir)):
        if name == "model.json" or not os.path.isfile(os.path.join(model_dir, name)):
            continue
        path = os.path.join(model_dir, name)
        files[name] = {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}
    card = dict(card)
    card["files"] = files
    with open(os.path.join(model_dir, "model.json"), "w", encoding="utf-8") as f:
        json.dump(card, f, indent=2, ensure_ascii=False)
        f.write("\n")


def read_card(model_dir: str) -> dict:
    with open(os.path.join(model_dir, "model.json"), encoding="utf-8") as f:
        return json.load(f)


def save_scripted(module, path: str) -> None:
    """Saves a scripted module without its *.debug_pkl entries.

    They only map TorchScript code back to Python source lines for error messages, and they
    record the absolute path of the Python file on the machine that exported the model.
    """
    import io
    import zipfile
    import torch
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    buf.seek(0)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path + ".tmp", "w",
                                                      zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            if info.filename.endswith(".debug_pkl"):
                continue
            out = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            dst.writestr(out, src.read(info.filename))
    os.replace(path + ".tmp", path)
