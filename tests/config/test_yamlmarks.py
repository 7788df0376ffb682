"""YAML loading: marks for every key and item, and no YAML 1.1 surprises."""

from fsrouter.config.yamlmarks import YamlSyntaxError, load_marked


def test_marks_for_keys_items_and_mappings():
    data, marks, problems = load_marked("a: [x, y]\nb:\n  c: 1\n  d:\n    - {e: 2}\n")
    assert data == {"a": ["x", "y"], "b": {"c": 1, "d": [{"e": 2}]}}
    assert problems == []
    assert marks.keys[("a",)] == (1, 1)
    assert marks.keys[("a", 1)] == (1, 8)
    assert marks.keys[("b", "c")] == (3, 3)
    assert marks.keys[("b", "d", 0, "e")] == (5, 8)
    assert marks.for_missing(("b",)) == (3, 3)
    assert marks.for_value(("b", "d", 0, "nothing")) == (5, 7)


def test_yaml_11_surprises_stay_text():
    text = ("t: 18:00\nn: +4930123\no: 030123\nc: NO\ny: yes\nb: true\nd: 2024-01-01 09:00:00\n"
            "i: 42\nf: 2.5\nz: ~\nq: '007'\n")
    data, _, _ = load_marked(text)
    assert data == {"t": "18:00", "n": "+4930123", "o": "030123", "c": "NO", "y": "yes",
                    "b": True, "d": "2024-01-01 09:00:00", "i": 42, "f": 2.5, "z": None,
                    "q": "007"}


def test_keys_are_text_as_written():
    data, _, _ = load_marked("1001: a\ntrue: b\n")
    assert data == {"1001": "a", "true": "b"}


def test_duplicate_key_is_a_problem_and_first_wins():
    data, _, problems = load_marked("a: 1\nb: 2\na: 3\n")
    assert data == {"a": 1, "b": 2}
    assert [(p.line, p.column, p.path, p.message) for p in problems] == [
        (3, 1, ("a",), "duplicate key (first defined at line 1)")]


def test_merge_keys_explicit_wins():
    data, marks, _ = load_marked("base: &b {x: 1, y: 2}\nk:\n  <<: *b\n  y: 3\n")
    assert data["k"] == {"y": 3, "x": 1}
    assert marks.keys[("k", "y")] == (4, 3)


def test_syntax_error_has_position():
    try:
        load_marked("a: b\n c: d: e\n")
    except YamlSyntaxError as exc:
        assert (exc.line, exc.column, exc.message) == (
            2, 3, "mapping values are not allowed in this context")
    else:
        raise AssertionError("no syntax error")


def test_pure_python_loader_gives_the_same_data_and_marks(monkeypatch):
    import yaml

    from fsrouter.config import yamlmarks

    text = "a: [1, '2', x]\nb: {c: 18:00, d: true, e: ~, f: +49 30 1}\n"
    fast = load_marked(text)
    monkeypatch.setattr(yamlmarks, "_LOADER", yaml.SafeLoader)
    slow = load_marked(text)
    assert fast[0] == slow[0] == {"a": [1, "2", "x"],
                                  "b": {"c": "18:00", "d": True, "e": None, "f": "+49 30 1"}}
    assert fast[1] == slow[1]
