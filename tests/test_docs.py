"""The documentation stays true to the repository: every relative link and #anchor in
README.md, INSTALL.md and docs/*.md resolves, and every command line they quote that runs
a tool (``python tools/X.py ...``, ``torchrun ... tools/X.py ...``, ``python -m
torch.distributed.launch ... tools/X.py ...``) names an existing script and is accepted by
that tool's own argument parser, its ``KEY VALUE`` overrides included (known keys, values
of the key's type).

Conventions of the quoted commands: ``<placeholder>`` stands for a word, ``[--opt VALUE]``
for an optional part (``a|b``: the first is checked), and ``...`` for an elided part (the
command may then omit required options). A code block whose output shows ``error:`` is an
example of a refused command and must be refused.
"""
import argparse
import functools
import glob
import importlib.util
import os
import re
import shlex
import sys
from unittest import mock

import pytest

from config import default_config, merge_opts, merge_yaml
from utils.errors import UserError
from utils.launch import parse_command_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, 'tools')
sys.path.insert(0, TOOLS)
LAUNCHERS = {'python', 'python3', 'torchrun', 'srun', 'mpirun'}
SEPARATORS = {'&&', '||', ';', '|'}
SCRIPT = re.compile(r'tools/\w+\.py')
FENCE = re.compile(r'^\s*```(\w*)')
PLACEHOLDER = 'placeholder'  # what a <placeholder> becomes


def doc_files(root=ROOT):
    """The documentation this test keeps true: README.md, INSTALL.md and docs/*.md."""
    names = ['README.md', 'INSTALL.md'] + sorted(
        os.path.relpath(p, root) for p in glob.glob(os.path.join(root, 'docs', '*.md')))
    return [os.path.join(root, n) for n in names if os.path.exists(os.path.join(root, n))]


# --- Markdown ---------------------------------------------------------------------------

def split_markdown(text):
    """``(prose, blocks)``: the text outside fenced code blocks (each block's lines
    blanked, so that paragraphs stay apart), and the blocks as ``(info, text)``."""
    prose, blocks, block = [], [], None
    for line in text.split('\n'):
        fence = FENCE.match(line)
        if fence and block is None:
            block = (fence.group(1), [])
        elif fence:
            blocks.append((block[0], '\n'.join(block[1])))
            block = None
        elif block is not None:
            block[1].append(line)
        else:
            prose.append(line)
            continue
        prose.append('')
    return '\n'.join(prose), blocks


def inline_code(prose):
    """The code spans of ``prose`` (a span may run over a line break, not a blank line)."""
    return [' '.join(s.split()) for s in re.findall(r'`([^`]+)`', prose)
            if '\n\n' not in s]


def heading_slugs(text):
    """The anchors GitHub gives the headings of a Markdown text: lower case, punctuation
    other than '-' and '_' dropped, spaces as '-', repeats numbered ``-1``, ``-2``..."""
    prose, _ = split_markdown(text)
    slugs, seen = set(), {}
    for title in re.findall(r'^#{1,6}\s+(.+?)\s*#*\s*$', prose, re.M):
        slug = re.sub(r'[^\w\- ]', '', title.strip().lower()).replace(' ', '-')
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        slugs.add(f'{slug}-{count}' if count else slug)
    return slugs


def broken_links(path):
    """``'target: why'`` for each relative link or image of the Markdown file ``path``
    whose file does not exist, or whose ``#anchor`` is no heading of its target."""
    text = open(path, encoding='utf-8').read()
    prose, _ = split_markdown(text)
    prose = re.sub(r'`[^`]*`', '', prose)  # links inside code are code
    problems = []
    for target in re.findall(r'!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)', prose):
        if re.match(r'[a-z][a-z0-9+.-]*:', target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition('#')
        linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) \
            if file_part else path
        if not os.path.exists(linked):
            problems.append(f'{target}: {os.path.relpath(linked, ROOT)} does not exist')
        elif anchor and not (linked.endswith('.md') and
                             anchor in heading_slugs(open(linked, encoding='utf-8').read())):
            problems.append(f'{target}: no heading #{anchor} in {os.path.relpath(linked, ROOT)}')
    return problems


# --- Command lines ----------------------------------------------------------------------

def shell_commands(code):
    """The simple commands of a piece of shell: continuation lines joined, a ``$ ``
    prompt and comments dropped, split at ``&&``, ``||``, ``;`` and ``|``."""
    commands = []
    for line in code.replace('\\\n', ' ').split('\n'):
        line = re.sub(r'^\s*\$\s', '', line)
        line = re.sub(r'<[^<>\n]*>', PLACEHOLDER, line)  # <run dir>, <ckpt>.pth
        try:
            words = shlex.split(line, comments=True)
        except ValueError:  # not shell: an output line with an odd quote
            continue
        command = []
        for word in words + [';']:
            if word not in SEPARATORS:
                command.append(word)
            elif command:
                commands.append(command)
                command = []
    return commands


def tool_invocation(words):
    """``(script, arguments)`` when ``words`` run a tool (a launcher word first: a mention
    such as ``tools/test_ee.py --submit`` runs nothing), else None. Environment
    assignments before the command and ``[...]`` around optional parts are dropped; of
    ``a|b`` the first is kept."""
    while words and re.match(r'[A-Za-z_]\w*=', words[0]):
        words = words[1:]
    scripts = [i for i, w in enumerate(words) if SCRIPT.fullmatch(w)]
    if not scripts or words[0] not in LAUNCHERS:
        return None
    args, optional = [], False
    for word in words[scripts[0] + 1:]:
        if word.startswith('[-'):
            word, optional = word[1:], True
        if optional and word.endswith(']'):
            word, optional = word[:-1], False
        if '|' in word and not word.startswith(('[', '(')):
            word = word.split('|')[0]
        if word:
            args.append(word)
    return words[scripts[0]], args


class CapturedParser(Exception):
    def __init__(self, parser):
        super().__init__('parser captured')
        self.parser = parser


class Refused(Exception):
    """A command line that its tool would refuse."""


def _capture(parser, *args, **kwargs):
    raise CapturedParser(parser)


@functools.lru_cache(maxsize=None)
def tool_module(script):
    """``tools/<script>`` as a module, loaded by path: by name, tools/test.py would meet
    the standard library's test package."""
    name = os.path.basename(script)[:-3]
    spec = importlib.util.spec_from_file_location(f'docs_tool_{name}', os.path.join(ROOT, script))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tool_parser(script):
    """The argument parser that ``tools/<script>`` builds (a new one on every call), taken
    from its ``main()`` at the moment it would parse: nothing of the tool runs after that."""
    module = tool_module(script)
    with mock.patch.object(argparse.ArgumentParser, 'parse_known_args', _capture), \
            mock.patch.object(argparse.ArgumentParser, 'parse_known_intermixed_args', _capture), \
            mock.patch.object(sys, 'argv', [script]):
        try:
            module.main()
        except CapturedParser as captured:
            return captured.parser
    raise AssertionError(f'{script}: main() returned without parsing a command line')


def _refuse(message):
    raise Refused(message)


def check_command(script, args, elided=False):
    """Parse ``args`` as ``tools/<script>`` does and merge its overrides into the config
    (its ``--cfg`` file when that exists in the repository); raise Refused with the
    reason when the tool would refuse them. ``elided``: required options may be absent."""
    if not os.path.isfile(os.path.join(ROOT, script)):
        raise Refused(f'{script} does not exist')
    parser = tool_parser(script)
    parser.allow_abbrev = False  # documentation spells options out
    parser.error = _refuse
    if elided:
        for item in parser._actions + parser._mutually_exclusive_groups:
            item.required = False
    if any(action.dest == 'opts' for action in parser._actions):
        parsed = parse_command_line(parser, args)
    else:
        parsed = parser.parse_args(args)
    cfg_path = getattr(parsed, 'cfg', None)
    cfg = default_config()
    try:
        if cfg_path and cfg_path.startswith('experiments/') and PLACEHOLDER not in cfg_path:
            merge_yaml(cfg, os.path.join(ROOT, cfg_path))
        merge_opts(cfg, list(getattr(parsed, 'opts', [])))
    except UserError as e:
        raise Refused(str(e)) from None


def command_problems(path):
    """``(command, problem, expected_refusal)`` for every tool command quoted in the
    Markdown file ``path`` (problem None when the tool accepts it)."""
    text = open(path, encoding='utf-8').read()
    prose, blocks = split_markdown(text)
    pieces = [(code, 'error:' in code) for info, code in blocks if info in ('', 'bash', 'sh')]
    pieces += [(span, False) for span in inline_code(prose)]
    results = []
    for code, expected_refusal in pieces:
        for words in shell_commands(code):
            invocation = tool_invocation(words)
            if invocation is None:
                continue
            script, args = invocation
            try:
                # 'python tools/X.py' alone names the tool: its options are elided
                check_command(script, args, elided='...' in words or not args)
                problem = None
            except Refused as e:
                problem = str(e)
            results.append((' '.join(words), problem, expected_refusal))
    return results


# --- The repository's documentation -------------------------------------------------------

DOCS = doc_files()


@pytest.mark.parametrize('path', DOCS, ids=[os.path.relpath(p, ROOT) for p in DOCS])
def test_every_relative_link_and_anchor_resolves(path):
    assert broken_links(path) == []


@pytest.mark.parametrize('path', DOCS, ids=[os.path.relpath(p, ROOT) for p in DOCS])
def test_every_quoted_tool_command_is_one_its_tool_accepts(path):
    results = command_problems(path)
    assert [(c, p) for c, p, refused in results if p and not refused] == []
    assert [c for c, p, refused in results if refused and not p] == []


def test_the_docs_quote_commands_of_the_main_tools():
    """The extraction finds the commands it is meant to check (an empty harvest would
    pass the test above vacuously)."""
    commands = [c for path in DOCS for c, _, _ in command_problems(path)]
    for script in ('train_ee', 'test_ee', 'sweep_threshold', 'profile_latency', 'predict',
                   'visualize', 'benchmark', 'gpu_check', 'get_flops', 'time_eval_modes'):
        assert any(f'tools/{script}.py' in c for c in commands), script
    assert any(c.startswith('torchrun') for c in commands)
    assert any('torch.distributed.launch' in c for c in commands)


def test_readme_quick_start_is_what_ci_runs():
    """.ci/run runs the README's two commands (with pip quiet, as a module) and the page
    on the quick start quotes the same two."""
    readme = open(os.path.join(ROOT, 'README.md'), encoding='utf-8').read()
    quick_start = readme[readme.index('## Quick start'):]
    _, blocks = split_markdown(quick_start)
    lines = blocks[0][1].split('\n')
    assert lines == ['pip install -r requirements.txt && bash scripts/quickstart.sh',
                     'pip install -r requirements-test.txt && python -m pytest -q']
    ci = open(os.path.join(ROOT, '.ci', 'run')).read()
    for line in lines:
        assert line.replace('pip install', 'python -m pip install -q') in ci
    page = open(os.path.join(ROOT, 'docs', 'quickstart.md'), encoding='utf-8').read()
    assert '\n'.join(lines) in page


# --- The checks themselves, on made-up pages ----------------------------------------------

def write(tmp_path, files):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return str(tmp_path / next(iter(files)))


def test_the_link_check_catches_a_missing_file_and_a_bad_anchor(tmp_path):
    page = write(tmp_path, {
        'docs/page.md': '# Page\n\n## Where the results go\n\nSee [a](other.md#step-2-data), '
                        '[b](#where-the-results-go), [c](../LICENSE), ![d](panel.png), '
                        '[e](https://example.com/x#y) and `[f](nowhere.md)`.\n\n'
                        'Broken: [g](missing.md), [h](other.md#step-3), [i](#results).\n'
                        '```\n[j](not-a-link.md)\n```\n',
        'docs/other.md': '# Other\n\n## Step 2: data\n',
        'docs/panel.png': '', 'LICENSE': ''})
    problems = broken_links(page)
    assert [p.split(':')[0] for p in problems] == ['missing.md', 'other.md#step-3', '#results']


@pytest.mark.parametrize('title, slug', [
    ('4. ImageNet-pretrained HRNet weights', '4-imagenet-pretrained-hrnet-weights'),
    ('What is verified on CUDA: tools/gpu_check.py', 'what-is-verified-on-cuda-toolsgpu_checkpy'),
    ('Synthetic (no download)', 'synthetic-no-download'),
    ('Threshold sweep: accuracy against cost', 'threshold-sweep-accuracy-against-cost'),
])
def test_heading_slugs_are_githubs(title, slug):
    assert heading_slugs(f'## {title}\n\n```\n# not a heading\n```\n') == {slug}
    assert heading_slugs(f'## {title}\n## {title}\n') == {slug, f'{slug}-1'}


GOOD = """```bash
python tools/test_ee.py --cfg experiments/cityscapes/w48.yaml TEST.MODEL_FILE <ckpt>.pth \\
    TEST.FLIP_TEST True   # a comment
torchrun --nproc_per_node 4 tools/sweep_threshold.py --cfg ... --thresholds 0.9 0.99
OMP_NUM_THREADS=1 python tools/profile_latency.py --cfg x.yaml --shape 64 96 --out p.json \\
    [--criterion-free] MASK.EXECUTION sparse
```
Or `python tools/predict.py --cfg <run dir>/config.yaml --image a.png b.png --out pred/`,
`python -m torch.distributed.launch tools/train_ee.py --cfg experiments/cityscapes/w48.yaml`;
a mention, `tools/test_ee.py --submit`, is no command.

```
$ python tools/train_ee.py --cfg experiments/cityscapes/w48.yaml SOLVER.BASE_LR 0.02
error: unknown config key SOLVER.BASE_LR
```
"""


def test_the_command_check_accepts_good_commands(tmp_path):
    page = write(tmp_path, {'page.md': GOOD.replace(' [--criterion-free]', '')})
    results = command_problems(page)
    assert [SCRIPT.search(r[0]).group() for r in results] == [
        'tools/test_ee.py', 'tools/sweep_threshold.py', 'tools/profile_latency.py',
        'tools/train_ee.py', 'tools/predict.py', 'tools/train_ee.py']
    assert [(c, p) for c, p, refused in results if p and not refused] == []
    assert [refused for _, p, refused in results if p] == [True]  # the error example


@pytest.mark.parametrize('good, bad, reason', [
    ('tools/test_ee.py --cfg', 'tools/test_eee.py --cfg',
     'tools/test_eee.py does not exist'),
    ('--thresholds 0.9', '--thresholdz 0.9', 'unrecognized arguments: --thresholdz'),
    ('--shape 64 96', '--shape tall 96', "argument --shape: invalid int value: 'tall'"),
    ('MASK.EXECUTION sparse', 'MASK.EXECUTIONS sparse', 'MASK.EXECUTIONS'),
    ('TEST.FLIP_TEST True', 'TEST.FLIP_TEST maybe', 'TEST.FLIP_TEST'),
    ('w48.yaml TEST', 'w48.yamll TEST', 'w48.yamll'),  # a --cfg file that does not exist
    ('b.png --out pred/', 'b.png', 'required: --out'),  # a required option left out
])
def test_the_command_check_refuses_each_kind_of_mistake(tmp_path, good, bad, reason):
    text = GOOD.replace(' [--criterion-free]', '')
    assert text.count(good) == 1
    page = write(tmp_path, {'page.md': text.replace(good, bad)})
    problems = [p for _, p, refused in command_problems(page) if p and not refused]
    assert len(problems) == 1 and reason in problems[0], problems


def test_optional_parts_are_checked_too(tmp_path):
    page = write(tmp_path, {'page.md': GOOD})
    problems = [p for _, p, refused in command_problems(page) if p and not refused]
    assert problems == ['unrecognized arguments: --criterion-free']
