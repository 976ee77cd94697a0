#!/usr/bin/env python3
"""Regenerates the lists in this directory from a clone of upstream Kube-OVN.

    python3 common/upstream-flags/extract.py /path/to/kube-ovn.git [klog.git]

Reads, at the clone's HEAD: pkg/controller/config.go and pkg/daemon/config.go (the pflag
registrations), the chart templates (charts/kube-ovn, charts/kube-ovn-v2) rendered with their
values.yaml defaults, and dist/images/install.sh with its variables' defaults. klog's flags come
from a klog clone at the version upstream's go.mod requires. The output is facts (names,
defaults, argument lists); see README.md here for the formats.
"""

import os
import re
import subprocess
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))


def git(repo, *args):
    return subprocess.run(["git", "-C", repo] + list(args), check=True,
                          capture_output=True, text=True).stdout


def show(repo, path, rev="HEAD"):
    return git(repo, "show", f"{rev}:{path}")


# ---------------------------------------------------------------- pflag registrations

PFLAG = re.compile(
    r'pflag\.(Bool|String|Int|Int32|Uint32|Int64|Float64|Duration|StringSlice)\(\s*"([^"]+)",\s*(.*?),\s*"',
    re.S)
VAR = re.compile(r'flagSet\.(Duration)Var\(&[^,]+,\s*"([^"]+)",\s*([^,]+),', re.S)
TYPES = {"Bool": "bool", "String": "string", "Int": "int", "Int32": "int32", "Uint32": "uint32",
         "Int64": "int64", "Float64": "float64", "Duration": "duration",
         "StringSlice": "stringSlice"}


def go_constants(repo):
    """`Name = "value"` / `Name = 123` constants of pkg/util and the packages read."""
    consts = {}
    for path in ["pkg/util/const.go", "pkg/util/network_attachment.go", "pkg/daemon/config.go",
                 "pkg/daemon/config_linux.go", "pkg/controller/config.go",
                 "pkg/ovn_leader_checker/ovn.go"]:
        try:
            text = show(repo, path)
        except subprocess.CalledProcessError:
            continue
        pkg = "util." if path.startswith("pkg/util/") else ""
        for m in re.finditer(r'^\s*(?:const\s+)?(\w+)\s*(?:\w+\s*)?=\s*("[^"]*"|[0-9][0-9_]*(?:\s*\*\s*time\.\w+)?)\s*$',
                             text, re.M):
            consts[pkg + m.group(1)] = m.group(2)
    return consts


def go_default(expr, kind, consts):
    expr = expr.strip()
    expr = consts.get(expr, expr)
    m = re.fullmatch(r'config\.(\w+)', expr)
    if m:  # leader election: defaults from defaultLeader* constants
        expr = consts.get("defaultLeader" + m.group(1), expr)
    if expr == "nil":
        return ""
    if expr == "podIP":  # the leader checker's --localAddress: $POD_IP when it starts
        return ""
    if expr.startswith('"'):
        return expr[1:-1]
    if kind == "duration":
        m = re.fullmatch(r'(\d+)\s*\*\s*time\.(Second|Minute|Hour|Millisecond)', expr)
        if m:
            unit = {"Second": "s", "Minute": "m", "Hour": "h", "Millisecond": "ms"}[m.group(2)]
            return m.group(1) + unit
    if re.fullmatch(r'[0-9*\s]+', expr):
        return str(eval(expr))  # products of integer literals only, checked above
    return expr


def flags_of(repo, path, consts):
    text = show(repo, path)
    out = []
    for regex in (VAR, PFLAG):
        for m in regex.finditer(text):
            kind = TYPES[m.group(1)]
            out.append((m.group(2), kind, go_default(m.group(3), kind, consts)))
    return out


KLOG_FLAG = re.compile(
    r'commandLine\.(StringVar|BoolVar|Uint64Var|Var)\(&logging\.(\w+),\s*"([^"]+)",\s*(?:([^,\n)]+),)?')
KLOG_VAR_KINDS = {"verbosity": ("level", "0"), "stderrThreshold": ("severity", "2"),
                  "alsologtostderrthreshold": ("severity", "0"),
                  "vmodule": ("moduleSpec", ""), "traceLocation": ("traceLocation", ":0")}


def klog_flags(klog_repo, version):
    text = show(klog_repo, "klog.go", version)
    out = []
    for m in KLOG_FLAG.finditer(text):
        fn, field, name, default = m.groups()
        if fn == "Var":
            kind, default = KLOG_VAR_KINDS[field]
        else:
            kind = {"StringVar": "string", "BoolVar": "bool", "Uint64Var": "uint64"}[fn]
            default = default.strip().strip('"')
        out.append((name, kind, default))
    return out


# ---------------------------------------------------------------- a small Go-template renderer

ACTION = re.compile(r'\{\{(-?)\s*(.*?)\s*(-?)\}\}', re.S)


class Template:
    """Enough of Go's text/template for the chart's argument and env lists: if/else if/else,
    range, with, .Values paths, index, eq/ne/or/and/not, default, ternary, include, nindent."""

    def __init__(self, values, helpers):
        self.values = values
        self.defines = {}
        self.parse(self.tokens(helpers))

    def tokens(self, text):
        out, pos = [], 0
        for m in ACTION.finditer(text):
            lit = text[pos:m.start()]
            if m.group(1):
                lit = lit.rstrip()
            if out and out[-1][0] == "act" and out[-1][2]:
                lit = lit.lstrip()
            out.append(("text", lit))
            out.append(("act", m.group(2), bool(m.group(3))))
            pos = m.end()
        lit = text[pos:]
        if out and out[-1][0] == "act" and out[-1][2]:
            lit = lit.lstrip()
        out.append(("text", lit))
        return out

    def parse(self, toks, i=0, stop=("end",)):
        """Returns (nodes, index of the stopping action, its text)."""
        nodes = []
        while i < len(toks):
            t = toks[i]
            if t[0] == "text":
                nodes.append(("text", t[1]))
                i += 1
                continue
            act = t[1]
            word = act.split()[0] if act else ""
            if word in stop or (word == "else" and "else" in stop):
                return nodes, i, act
            if act.startswith("/*"):
                i += 1
                continue
            if word in ("if", "with", "range"):
                branches = []
                cond = act[len(word):].strip()
                while True:
                    body, i, end = self.parse(toks, i + 1, stop=("end", "else"))
                    branches.append((cond, body))
                    if end.startswith("else"):
                        rest = end[4:].strip()
                        cond = rest[2:].strip() if rest.startswith("if") else None
                        continue
                    break
                nodes.append((word, branches))
                i += 1
                continue
            if word == "define":
                body, i, _ = self.parse(toks, i + 1)
                self.defines[act.split('"')[1]] = body
                i += 1
                continue
            nodes.append(("expr", act))
            i += 1
        return nodes, i, None

    def render(self, text, dot=None):
        nodes, _, _ = self.parse(self.tokens(text))
        return self.run(nodes, dot if dot is not None else {"Values": self.values})

    def run(self, nodes, dot, env=None):
        env = dict(env or {})
        out = []
        for n in nodes:
            if n[0] == "text":
                out.append(n[1])
            elif n[0] == "expr":
                m = re.fullmatch(r'(\$\w+)\s*:?=\s*(.*)', n[1], re.S)
                if m:
                    env[m.group(1)] = self.pipeline(m.group(2), dot, env)
                    continue
                out.append(fmt(self.pipeline(n[1], dot, env)))
            elif n[0] == "if":
                for cond, body in n[1]:
                    if cond is None or truthy(self.pipeline(cond, dot, env)):
                        out.append(self.run(body, dot, env))
                        break
            elif n[0] == "with":
                val = self.pipeline(n[1][0][0], dot, env)
                if truthy(val):
                    out.append(self.run(n[1][0][1], val, env))
                elif len(n[1]) > 1:
                    out.append(self.run(n[1][1][1], dot, env))
            elif n[0] == "range":
                expr = n[1][0][0]
                m = re.fullmatch(r'(?:\$\w+\s*,\s*)?(\$\w+)\s*:=\s*(.*)', expr)
                var, expr = (m.group(1), m.group(2)) if m else (None, expr)
                val = self.pipeline(expr, dot, env)
                for item in (val or []):
                    e = dict(env)
                    if var:
                        e[var] = item
                    out.append(self.run(n[1][0][1], item, e))
        return "".join(out)

    def pipeline(self, text, dot, env):
        stages = split_top(text, "|")
        val = self.call(stages[0], dot, env, None)
        for s in stages[1:]:
            val = self.call(s, dot, env, val)
        return val

    def call(self, text, dot, env, piped):
        args = self.args(text.strip())
        if not args:
            return piped
        head, rest = args[0], args[1:]
        fn = head if isinstance(head, str) and re.fullmatch(r'[a-zA-Z]\w*', head) else None
        vals = lambda: [self.term(a, dot, env) for a in rest] + ([piped] if piped is not None else [])
        if fn is None:
            return self.term(head, dot, env)
        if fn == "index":
            v = vals()
            cur = v[0]
            for k in v[1:]:
                cur = cur.get(k) if isinstance(cur, dict) else None
            return cur
        if fn == "eq":
            v = vals()
            return all(x == v[0] for x in v[1:])
        if fn == "ne":
            v = vals()
            return v[0] != v[1]
        if fn == "or":
            v = vals()
            return next((x for x in v if truthy(x)), v[-1])
        if fn == "and":
            v = vals()
            return next((x for x in v if not truthy(x)), v[-1])
        if fn == "not":
            return not truthy(vals()[0])
        if fn == "default":
            v = vals()
            return v[1] if truthy(v[1]) else v[0]
        if fn == "ternary":
            v = vals()
            return v[0] if truthy(v[2]) else v[1]
        if fn in ("nindent", "indent"):
            v = vals()
            pad = " " * int(v[0])
            body = "\n".join(pad + line for line in fmt(v[1]).split("\n"))
            return ("\n" if fn == "nindent" else "") + body
        if fn == "include":
            v = vals()
            body = self.defines.get(v[0])
            if body is None:
                return ""
            try:
                return self.run(body, v[1])
            except Exception:  # helpers needing cluster lookups render as empty
                return ""
        if fn in ("quote", "squote"):
            return '"' + fmt(vals()[0]) + '"'
        if fn == "toString":
            return fmt(vals()[0])
        return ""

    def args(self, text):
        out, i = [], 0
        while i < len(text):
            c = text[i]
            if c.isspace():
                i += 1
            elif c == '"':
                j = text.index('"', i + 1)
                out.append(("str", text[i + 1:j]))
                i = j + 1
            elif c == "(":
                depth, j = 1, i + 1
                while depth:
                    depth += {"(": 1, ")": -1}.get(text[j], 0)
                    j += 1
                out.append(("paren", text[i + 1:j - 1]))
                i = j
            else:
                j = i
                while j < len(text) and not text[j].isspace():
                    j += 1
                out.append(text[i:j])
                i = j
        return out

    def term(self, a, dot, env):
        if isinstance(a, tuple):
            return a[1] if a[0] == "str" else self.pipeline(a[1], dot, env)
        if a in ("true", "false"):
            return a == "true"
        if re.fullmatch(r'-?\d+', a):
            return int(a)
        if a == ".":
            return dot
        if a.startswith("$"):
            base, _, path = a.partition(".")
            cur = env.get(base) if base != "$" else {"Values": self.values}
            return walk(cur, path)
        if a.startswith("."):
            return walk(dot, a[1:])
        return None


def walk(cur, path):
    for k in filter(None, path.split(".")):
        cur = cur.get(k) if isinstance(cur, dict) else None
    return cur


def split_top(text, sep):
    out, depth, quote, cur = [], 0, False, ""
    for c in text:
        if c == '"':
            quote = not quote
        elif not quote and c == "(":
            depth += 1
        elif not quote and c == ")":
            depth -= 1
        if c == sep and depth == 0 and not quote:
            out.append(cur)
            cur = ""
        else:
            cur += c
    out.append(cur)
    return out


def truthy(v):
    return not (v is None or v is False or v == 0 or v == "" or v == [] or v == {})


def fmt(v):
    if v is None:
        return ""
    if v is True:
        return "true"
    if v is False:
        return "false"
    return str(v)


def container_block(rendered, container):
    """The `- name: <container>` item of a rendered manifest, parsed on its own (the rest of
    the manifest may use template functions this renderer leaves empty)."""
    lines = rendered.split("\n")
    for i, line in enumerate(lines):
        if line.strip() == f"- name: {container}":
            indent = len(line) - len(line.lstrip())
            block = [line]
            for nxt in lines[i + 1:]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                block.append(nxt)
            # Image references come from helpers this renderer does not evaluate.
            block = [l for l in block if not l.strip().startswith(("image:", "imagePullPolicy:"))]
            item = yaml.safe_load("\n".join(l[indent:] for l in block))[0]
            if "command" in item or "args" in item:
                return item
    raise KeyError(container)


def env_of(c):
    out = []
    for e in c.get("env", []) or []:
        if "value" in e:
            out.append(f'{e["name"]}={e["value"]}')
        else:
            ref = e.get("valueFrom", {})
            kind, spec = next(iter(ref.items()))
            what = spec.get("fieldPath") or spec.get("key") or spec.get("resource") or ""
            out.append(f'{e["name"]}=<{kind} {what}>')
    return out


def chart_invocations(repo, chart, files):
    values = yaml.safe_load(show(repo, f"{chart}/values.yaml"))
    helpers = ""
    for path in git(repo, "ls-tree", "-r", "--name-only", "HEAD", f"{chart}/templates").split():
        if path.endswith(".tpl"):
            helpers += show(repo, path)
    tpl = Template(values, helpers)
    out = []
    for label, path, container in files:
        text = show(repo, f"{chart}/templates/{path}")
        # The v2 chart builds image references through a dict helper (kubeovn.imageSpec); its
        # result with default values is the global registry, repository and tag.
        text = re.sub(r'\{\{ \$\w+Image\.prefix \}\}\{\{ \$\w+Image\.repository \}\}:\{\{ \$\w+Image\.tag \}\}',
                      "{{ .Values.global.registry.address }}/{{ .Values.global.images.kubeovn.repository }}"
                      ":{{ .Values.global.images.kubeovn.tag }}", text)
        rendered = tpl.render(text)
        c = container_block(rendered, container)
        argv = [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]
        out.append((label, f"{chart}/templates/{path} container {container}", argv, env_of(c)))
    return out


# ---------------------------------------------------------------- install.sh

def install_sh_invocations(repo):
    text = show(repo, "dist/images/install.sh")
    shvars = {}
    for m in re.finditer(r'^([A-Z_][A-Z0-9_]*)=(?:\$\{\1:-([^}]*)\}|"([^"]*)"|(\S*))', text, re.M):
        name = m.group(1)
        if name in shvars:
            continue
        val = next((g for g in m.groups()[1:] if g is not None), "")
        shvars[name] = val.strip('"')
    # The install script's own derived values (its IPv4 defaults) where a flag uses them.
    shvars.setdefault("addresses", "<the ovn-central node IPs>")

    def subst(s):
        return re.sub(r'\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?', lambda m: shvars.get(m.group(1), m.group(0)), s)

    lines = text.split("\n")
    out = []
    for label, marker in (("controller install.sh", "- /kube-ovn/start-controller.sh"),
                          ("install-cni install.sh", "- /kube-ovn/install-cni.sh"),
                          ("daemon install.sh", "- /kube-ovn/start-cniserver.sh")):
        start = next(i for i, l in enumerate(lines) if l.strip() == marker)
        argv = [marker[2:]]
        i = start + 1
        while not lines[i].strip().startswith("- --") and lines[i].strip() != "args:":
            i += 1
        if lines[i].strip() == "args:":
            i += 1
        while lines[i].strip().startswith("- --"):
            argv.append(subst(lines[i].strip()[2:]))
            i += 1
        env = []
        while not lines[i].strip().startswith("env:"):
            i += 1
        indent = len(lines[i]) - len(lines[i].lstrip())
        i += 1
        block = []
        while lines[i].strip() and len(lines[i]) - len(lines[i].lstrip()) > indent:
            block.append(lines[i])
            i += 1
        for e in yaml.safe_load(subst("\n".join(block))) or []:
            env.extend(env_of({"env": [e]}))
        out.append((label, f"dist/images/install.sh line {start + 1}", argv, env))
    return out


# ---------------------------------------------------------------- output

def write_flags(path, binary, source, commit, describe, flags):
    with open(path, "w") as f:
        f.write(f"# {binary}: upstream Kube-OVN's command-line flags, {source}\n")
        f.write(f"# upstream commit {commit} ({describe})\n")
        f.write("# generated by extract.py; format: name<TAB>type<TAB>default (see README.md)\n")
        for name, kind, default in flags:
            f.write(f"{name}\t{kind}\t{default}\n")


def main():
    repo = sys.argv[1]
    klog = sys.argv[2] if len(sys.argv) > 2 else None
    commit = git(repo, "rev-parse", "HEAD").strip()
    describe = git(repo, "describe", "--tags", "HEAD").strip()
    consts = go_constants(repo)
    write_flags(os.path.join(HERE, "controller.txt"), "kube-ovn-controller",
                "pkg/controller/config.go", commit, describe,
                flags_of(repo, "pkg/controller/config.go", consts))
    write_flags(os.path.join(HERE, "daemon.txt"), "kube-ovn-daemon (cniserver)",
                "pkg/daemon/config.go", commit, describe,
                flags_of(repo, "pkg/daemon/config.go", consts))
    write_flags(os.path.join(HERE, "pinger.txt"), "kube-ovn-pinger",
                "pkg/pinger/config.go", commit, describe,
                flags_of(repo, "pkg/pinger/config.go", consts))
    write_flags(os.path.join(HERE, "leader-checker.txt"), "kube-ovn-leader-checker",
                "pkg/ovn_leader_checker/ovn.go", commit, describe,
                flags_of(repo, "pkg/ovn_leader_checker/ovn.go", consts))
    if klog:
        gomod = show(repo, "go.mod")
        version = re.search(r'k8s\.io/klog/v2 (v\S+)', gomod).group(1)
        kcommit = git(klog, "rev-parse", version + "^{commit}").strip()
        write_flags(os.path.join(HERE, "klog.txt"), "klog (both binaries)",
                    f"k8s.io/klog/v2 {version} klog.go InitFlags, required by upstream go.mod",
                    kcommit, version, klog_flags(klog, version))

    invocations = chart_invocations(repo, "charts/kube-ovn", [
        ("controller chart", "controller-deploy.yaml", "kube-ovn-controller"),
        ("install-cni chart", "ovncni-ds.yaml", "install-cni"),
        ("daemon chart", "ovncni-ds.yaml", "cni-server"),
    ]) + chart_invocations(repo, "charts/kube-ovn-v2", [
        ("controller chart-v2", "controller/controller-deployment.yaml", "kube-ovn-controller"),
        ("install-cni chart-v2", "agent/agent-daemonset.yaml", "install-cni"),
        ("daemon chart-v2", "agent/agent-daemonset.yaml", "cni-server"),
    ]) + install_sh_invocations(repo)
    with open(os.path.join(HERE, "invocations.txt"), "w") as f:
        f.write("# How upstream's charts (rendered with their values.yaml defaults) and install.sh\n")
        f.write("# start kube-ovn-controller and kube-ovn-daemon, with the environment they set.\n")
        f.write(f"# upstream commit {commit} ({describe}); generated by extract.py.\n")
        f.write("# Sections: [<binary> <source>] <where>; then `arg <argv item>` / `env NAME=value`.\n")
        for label, where, argv, env in invocations:
            f.write(f"\n[{label}] {where}\n")
            for a in argv:
                f.write(f"arg {a}\n")
            for e in env:
                f.write(f"env {e}\n")


if __name__ == "__main__":
    main()
