"""Drive-letter recording paths: parsing, the drive map, and resolution that never leaves a root.

``make_tree``, ``check_path`` and the ``hostile_paths`` strategy are shared with
``bench/fuzz_paths.py``, which runs the same property on 100,000+ generated paths.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccgateway.config import parse_drive_map
from ccgateway.recordings.drivepaths import (
    SEGMENT,
    BadName,
    DrivePath,
    DrivePathError,
    NoMapping,
    NoSuchFile,
    parse_drive_path,
    resolve,
)

# --- the temporary file server --------------------------------------------------------------------

FILES = (
    "1/0/20201202/503/1714442.mp4",
    "6/0/20161025/20011/1902050.V3",
    "1/0/20181217/120/1524488.V3",
    "90/0/20210519/4977/1642329.mp4",
    "6/record/20161025/playvoice1477.wav",
    "3rdfile/6/record/20161025/20011/1902051.V3",
)
# link (relative to the root) -> target; "{base}" is the directory holding root and secrets.
LINKS = {
    "1/0/20201202/503/in.mp4": "1714442.mp4",  # inside: allowed
    "1/link": "0",  # a directory inside: allowed
    "1/self": "..",  # the root itself
    "1/0/20201202/503/out.mp4": "{base}/outside/secret.txt",
    "1/0/20201202/503/rel_out.mp4": "../../../../../../outside/secret.txt",
    "1/0/20201202/503/outdir": "{base}/outside/dir",
    "1/sib": "../../recordings",  # x/rec -> x/recordings: the prefix-confusion sibling
    "1/etc": "/etc",
    "1/0/20201202/503/loop": "loop",
    "1/0/20201202/503/dangling": "nowhere.mp4",
}
SECRETS = ("outside/secret.txt", "outside/dir/secret.txt", "x/recordings/secret.txt")


@dataclass(frozen=True)
class Tree:
    base: Path
    real_root: Path
    roots: dict[str, Path]
    files: frozenset[Path]


def make_tree(base: Path) -> Tree:
    """Y: -> base/x/rec, Z: -> a symlink to it, W: -> a missing directory; C: is unmapped."""
    root = base / "x" / "rec"
    for name in FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"recording " + name.encode())
    for name in SECRETS:
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_bytes(b"secret")
    for name, target in LINKS.items():
        (root / name).symlink_to(target.format(base=base))
    (base / "x" / "rec_link").symlink_to(root)
    os.mkfifo(root / "1" / "fifo")
    roots = {"Y": root, "Z": base / "x" / "rec_link", "W": base / "x" / "missing"}
    real_root = Path(os.path.realpath(root))
    return Tree(base, real_root, roots, frozenset(real_root / name for name in FILES))


def check_path(raw: str, tree: Tree) -> str:
    """The property: refused with a DrivePathError, or a real file of the tree. Returns the
    outcome's name; any other exception or an escape fails (AssertionError)."""
    try:
        parsed = parse_drive_path(raw)
    except DrivePathError as exc:
        assert type(exc) is BadName, f"parse raised {exc!r}"
        return "BadName"
    assert all(SEGMENT.fullmatch(part) for part in parsed.parts), parsed
    assert parse_drive_path(str(parsed)) == parsed
    try:
        found = resolve(parsed, tree.roots)
    except (NoMapping, NoSuchFile) as exc:
        return type(exc).__name__
    assert found.is_relative_to(tree.real_root), found
    assert found in tree.files, found
    assert found.is_file() and not found.is_symlink()
    assert os.path.realpath(found) == str(found)
    return "accepted"


# --- hostile path strategies ----------------------------------------------------------------------

HOSTILE_ALPHABET = "./\\:%0123456789abcdefABCDEFYyCc\x00\n"
UNICODE_TRICKS = (
    "\u2024\u2025\uff0e\uff0f\uff3c\uff1a\uff39\xc0\xae\xaf\u202e\u3000"
    " \t\x7f\x85\x9b\u212a\u017f\u0130\u2215\ud800"
)
REAL_SEGMENTS = sorted({part for name in (*FILES, *LINKS) for part in name.split("/")})
HOSTILE_SEGMENTS = (
    *REAL_SEGMENTS,
    *("..", ".", "...", "", " ", "~", "secret.txt", "passwd", "outside", "recordings", "x", "rec"),
    *("%2e%2e", "%2E%2E", "%2f", "%5c", "%00", "%252e", "..%5c..", ".%2e", "%c0%ae"),
    *("CON", "con", "aux.mp4", "Nul.V3", "COM1", "lpt9.txt", "CONIN$", "prn."),
    *("x.mp4::$DATA", "x.mp4:s", "x.mp4.", "x.mp4 ", " x", "\u2024\u2024", "\uff0e\uff0e"),
    *("\xc0\xae\xc0\xae", "x\x00", "x\n", "a" * 255, "a" * 256, "fifo"),
)
DRIVES = (
    *("Y:", "y:", "Z:", "z:", "W:", "C:", "c:", "", "Y", "YY:", ":", "1:", "Y:Y:"),
    *("\\\\?\\Y:", "\\\\.\\Y:", "\\??\\Y:", "//", "\\\\server\\share", "/", "\uff39:", "Y\uff1a"),
)
GOOD_DRIVES = ("Y:", "y:", "Z:", "z:", "Y:", "y:", "W:", "C:")
SEPARATORS = ("/", "\\", "//", "\\\\", "/./", "/../", "\uff0f", "\uff3c", "%2f", "%5c", "\x00", "")

hostile_text = st.text(
    st.one_of(st.sampled_from(HOSTILE_ALPHABET), st.sampled_from(UNICODE_TRICKS), st.characters()),
    max_size=40,
)
hostile_segment = st.one_of(
    st.sampled_from(HOSTILE_SEGMENTS), st.text(st.sampled_from(HOSTILE_ALPHABET), max_size=8)
)
structured_paths = st.builds(
    lambda drive, pairs: drive + "".join(sep + seg for sep, seg in pairs),
    st.sampled_from(DRIVES),
    st.lists(st.tuples(st.sampled_from(SEPARATORS), hostile_segment), max_size=8),
)


def _mutate(drive: str, seps: list[str], name: str, edits: list[tuple[int, str, bool]]) -> str:
    parts = name.split("/")
    for index, segment, replace in edits:
        where = index % (len(parts) + 1)
        if replace and where < len(parts):
            parts[where] = segment
        else:
            parts.insert(where, segment)
    return drive + "".join(seps[i % len(seps)] + part for i, part in enumerate(parts))


mutated_real_paths = st.builds(
    _mutate,
    st.sampled_from(GOOD_DRIVES),
    st.lists(st.sampled_from(("/", "\\")), min_size=1, max_size=3),
    st.sampled_from((*FILES, *LINKS, *(f"1/link/20201202/503/{f}" for f in ("1714442.mp4",)))),
    st.lists(st.tuples(st.integers(0, 7), hostile_segment, st.booleans()), max_size=2),
)
hostile_paths = st.one_of(hostile_text, structured_paths, mutated_real_paths)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return make_tree(tmp_path_factory.mktemp("drivepaths"))


# --- documented examples --------------------------------------------------------------------------

DOC_EXAMPLES = [
    ("Y:/1/0/20201202/503/1714442.mp4", "Y:/1/0/20201202/503/1714442.mp4", "agent", 1, 503),
    ("Y:/6/0/20161025/20011/1902050.V3", "Y:/6/0/20161025/20011/1902050.V3", "agent", 6, 20011),
    ("y:\\1\\0\\20181217\\120\\1524488.V3", "Y:/1/0/20181217/120/1524488.V3", "agent", 1, 120),
    ("y:/1/0/20181217/120/1524488.V3", "Y:/1/0/20181217/120/1524488.V3", "agent", 1, 120),
    (
        "Y:\\90/0\\20210519/4977\\1642329.mp4",
        "Y:/90/0/20210519/4977/1642329.mp4",
        "agent",
        90,
        4977,
    ),
    ("Y:/6/record/20161025/playvoice1477.wav", None, "ivr", 6, None),
    (
        "y:\\6\\RECORD\\20161025\\playvoice1477.wav",
        "Y:/6/RECORD/20161025/playvoice1477.wav",
        "ivr",
        6,
        None,
    ),
    ("Y:/3rdfile/6/record/20161025/20011/1902051.V3", None, "thirdparty", 6, 20011),
]


@pytest.mark.parametrize(("raw", "canonical", "kind", "vdn", "agent_id"), DOC_EXAMPLES)
def test_documented_paths_parse_and_resolve(
    tree: Tree, raw: str, canonical: str | None, kind: str, vdn: int, agent_id: int | None
) -> None:
    path = parse_drive_path(raw)
    assert str(path) == (canonical or raw)
    assert (path.kind, path.vdn, path.agent_id) == (kind, vdn, agent_id)
    assert path.drive == "Y"
    if path.parts[1] != "RECORD":  # the file server here is case-sensitive
        found = resolve(path, tree.roots)
        assert found == tree.real_root.joinpath(*path.parts)
        assert found.read_bytes().startswith(b"recording ")


def test_unknown_layouts_have_no_vdn_or_agent() -> None:
    for raw in ("Y:/1/x.mp4", "Y:/a/0/20201202/b/x.mp4", "Y:/3rdfile/6/x/1/2/f.V3"):
        path = parse_drive_path(raw)
        assert path.agent_id is None
    assert parse_drive_path("Y:/1/x.mp4").kind is None
    assert parse_drive_path("Y:/1/x.mp4").vdn is None
    assert parse_drive_path("Y:/a/0/20201202/b/x.mp4").vdn is None


def test_drive_path_validates_when_built_directly() -> None:
    assert DrivePath("Y", ("1", "x.mp4")) == parse_drive_path("y:\\1\\x.mp4")
    for drive, parts in [("y", ("1",)), ("YY", ("1",)), ("Y", ()), ("Y", ("..",)), ("Y", ("a/b",))]:
        with pytest.raises(BadName):
            DrivePath(drive, parts)


def test_error_classes_carry_their_retcodes() -> None:
    assert issubclass(DrivePathError, ValueError)
    assert (BadName.retcode, NoMapping.retcode, NoSuchFile.retcode) == (
        "104-003",
        "104-004",
        "104-005",
    )


# --- the drive map --------------------------------------------------------------------------------


def test_parse_drive_map() -> None:
    assert parse_drive_map("") == {}
    assert parse_drive_map("  ") == {}
    assert parse_drive_map("Y:=/srv/recordings;Z:=/mnt/z") == {
        "Y": Path("/srv/recordings"),
        "Z": Path("/mnt/z"),
    }
    assert parse_drive_map(" y: = /srv/a=b ; z=/mnt/z ;") == {
        "Y": Path("/srv/a=b"),
        "Z": Path("/mnt/z"),
    }


@pytest.mark.parametrize(
    "value",
    [
        "Y:",
        "Y:/srv",
        "YY:=/srv",
        "1:=/srv",
        ":=/srv",
        "Y:=",
        "Y:=srv/rel",
        "Y:=/a;y:=/b",
        "Y:=/a\x00",
    ],
)
def test_parse_drive_map_refuses(value: str) -> None:
    with pytest.raises(ValueError, match="<letter>:=<absolute directory>"):
        parse_drive_map(value)


# --- curated traversal payloads -------------------------------------------------------------------

BAD_NAMES = [
    "Y:/../etc/passwd",
    "Y:/1/../../etc/passwd",
    "Y:\\..\\..\\windows\\win.ini",
    "Y:/..\\..\\x",
    "Y:\\1\\..\\..\\x",
    "../../etc/passwd",
    "..\\..\\etc\\passwd",
    "Y:/1/0/%2e%2e/%2e%2e/etc/passwd",
    "Y:/%2E%2E/etc/passwd",
    "Y:/1/.%2e/x",
    "Y:/1/%2f/x",
    "Y:/1/..%5c..%5cx",
    "Y:/1/%252e%252e/x",
    "Y:/1/%c0%ae%c0%ae/x",
    "Y:/1/..%c0%af../x",
    "Y:/1/%u002e%u002e/x",
    "Y:/1/0/20201202/503/1714442.mp4%00.txt",
    "Y:/1/0/20201202/503/x\x00",
    "Y:/1/\x00",
    "Y:/1/x\n",
    "Y:/1/x\r\nSet-Cookie:a=b",
    "Y:/1/x\t",
    "Y:/1/\x7fx",
    "Y:/1/\x85x",
    "Y:/1/\x9bx",
    "/etc/passwd",
    "//x",
    "//server/share/x",
    "\\\\server\\share\\x",
    "\\\\?\\C:\\x",
    "\\\\.\\C:\\x",
    "\\??\\C:\\x",
    "\\\\?\\UNC\\server\\share",
    "file:///etc/passwd",
    "http://evil/x",
    "Y:/CON",
    "Y:/1/aux.mp4",
    "Y:/1/LPT1",
    "Y:/1/com9.txt",
    "Y:/1/nul",
    "Y:/1/Con.V3",
    "Y:/1/CONIN$",
    "Y:/1/x.mp4::$DATA",
    "Y:/1/x.mp4:$DATA",
    "Y:/1/x.mp4::$INDEX_ALLOCATION",
    "Y:/1/x:stream",
    "Y:/1/x.mp4.",
    "Y:/1/x.mp4 ",
    "Y:/1/ x",
    "Y:/1/...",
    "Y:/.ssh/id_rsa",
    "Y:/1/\u2024\u2024/x",
    "Y:/1/\u2025/x",
    "Y:\uff0f1",
    "Y:/1/\uff0e\uff0e/x",
    "Y:/1/\xc0\xae\xc0\xae/x",
    "Y:\u22151",
    "\uff39:/1/x",
    "Y\uff1a/1/x",
    "Y:/1/\u202egpj.exe",
    "Y:/1/x\u3000",
    "Y:/1/\ud800",
    "Y:/1/\u212aelvin",
    "Y:/" + "a/" * 600 + "x",
    "Y:/" + "a" * 256,
    "Y:/1/" + "x" * 1_000_000,
    "",
    "Y",
    "Y:",
    "Y:/",
    "Y:x",
    "Y:../x",
    "YY:/1/x",
    "1:/1/x",
    ":/1/x",
    " Y:/1/x",
    "Y://1/x",
    "Y:/1//x",
    "Y:/1/x/",
    "Y:/./1/x",
    "Y:/1/./x",
    "Y:/1/0/20201202/503/1714442.mp4/..",
    "Y:/1/0/20201202/503/1714442.mp4/.",
    "Y:/1/..;/x",
    "Y:/1/*.mp4",
    "Y:/1/x?.mp4",
    "Y:/1/<x>",
    "Y:/1/x|y",
    'Y:/1/"x"',
    "Y:/1/~/x",
    "Y:/1/$(id)",
    "Y:/1/`id`",
]
NO_MAPPING = ["C:/x", "c:\\windows\\win.ini", "D:/1/0/20201202/503/1714442.mp4"]
NO_SUCH_FILE = [
    "Y:/1/0/20201202/503/out.mp4",
    "Y:/1/0/20201202/503/rel_out.mp4",
    "Y:/1/0/20201202/503/outdir/secret.txt",
    "Y:/1/sib/secret.txt",
    "Y:/1/etc/passwd",
    "Y:/etc/passwd",
    "Y:/1/0/20201202/503",
    "Y:/1/self",
    "Y:/1/0/20201202/503/loop",
    "Y:/1/0/20201202/503/dangling",
    "Y:/1/fifo",
    "Y:/1/0/20201202/503/1714442.MP4",
    "W:/1/0/20201202/503/1714442.mp4",
    "Z:/1/0/20201202/503/out.mp4",
]
PAYLOADS = (
    [(p, BadName) for p in BAD_NAMES]
    + [(p, NoMapping) for p in NO_MAPPING]
    + [(p, NoSuchFile) for p in NO_SUCH_FILE]
)


def test_enough_payloads() -> None:
    assert len(PAYLOADS) >= 60


@pytest.mark.parametrize(("raw", "expected"), PAYLOADS, ids=[ascii(p)[:60] for p, _ in PAYLOADS])
def test_traversal_payloads_are_refused(tree: Tree, raw: str, expected: type[Exception]) -> None:
    with pytest.raises(DrivePathError) as info:
        resolve(parse_drive_path(raw), tree.roots)
    assert type(info.value) is expected
    assert check_path(raw, tree) == expected.__name__


# --- symlinks -------------------------------------------------------------------------------------


def test_symlinks_leaving_the_root_look_like_missing_files(tree: Tree) -> None:
    for raw in NO_SUCH_FILE[:5]:
        with pytest.raises(NoSuchFile, match="does not exist"):
            resolve(parse_drive_path(raw), tree.roots)


def test_symlinks_inside_the_root_resolve_to_their_target(tree: Tree) -> None:
    target = tree.real_root / "1/0/20201202/503/1714442.mp4"
    for raw in ("Y:/1/0/20201202/503/in.mp4", "Y:/1/link/20201202/503/1714442.mp4"):
        assert resolve(parse_drive_path(raw), tree.roots) == target
    assert resolve(parse_drive_path("Y:/1/self/1/link/20201202/503/in.mp4"), tree.roots) == target


def test_a_root_that_is_a_symlink_works(tree: Tree) -> None:
    found = resolve(parse_drive_path("z:\\6\\0\\20161025\\20011\\1902050.V3"), tree.roots)
    assert found == tree.real_root / "6/0/20161025/20011/1902050.V3"


def test_prefix_confusion_is_refused(tree: Tree) -> None:
    sibling = tree.base / "x" / "recordings" / "secret.txt"
    assert str(sibling).startswith(str(tree.real_root))  # what a string-prefix check would allow
    assert sibling.is_file()
    for roots in (tree.roots, {"Y": Path(str(tree.base / "x" / "rec") + "/")}):
        with pytest.raises(NoSuchFile):
            resolve(parse_drive_path("Y:/1/sib/secret.txt"), roots)


def test_broken_roots_answer_no_such_file(tree: Tree) -> None:
    path = parse_drive_path("Y:/1/0/20201202/503/1714442.mp4")
    file_root = tree.real_root / "1/0/20201202/503/1714442.mp4"
    for root in (Path("/nonexistent-root"), Path("/x\x00y"), file_root):
        with pytest.raises(NoSuchFile):
            resolve(path, {"Y": root})
    for relative in (Path(""), Path("x/rec")):  # never relative to the working directory
        with pytest.raises(NoMapping):
            resolve(path, {"Y": relative})


# --- the property ---------------------------------------------------------------------------------


def _examples() -> Iterator[str]:
    yield from (raw for raw, *_ in DOC_EXAMPLES)
    yield from (raw for raw, _ in PAYLOADS)


def test_check_path_accepts_the_real_files(tree: Tree) -> None:
    outcomes = {raw: check_path(raw, tree) for raw in _examples()}
    assert outcomes["Y:/1/0/20201202/503/1714442.mp4"] == "accepted"
    assert set(outcomes.values()) == {"accepted", "BadName", "NoMapping", "NoSuchFile"}


# Generation, not the check, is slow (~2 ms a path); on a loaded CI machine that trips the
# too_slow health check, which says nothing about the mapper.
@settings(
    max_examples=2000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(raw=hostile_paths)
def test_hostile_paths_property(tree: Tree, raw: str) -> None:
    check_path(raw, tree)
