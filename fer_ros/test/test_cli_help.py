"""Every command's --help gives each option's meaning and its default, and an option that is one of fer_node's
recognizer settings has the node's default (RecognizerSettings, the one source)."""
from __future__ import annotations

import argparse
import importlib
from dataclasses import fields

import pytest

from fer_ros.argtypes import HelpFormatter
from fer_ros.runtime import SETTING_HELP, RecognizerSettings

TOOLS = ["fer_ros.tools.replay", "fer_ros.tools.evaluate", "fer_ros.tools.make_bag", "fer_ros.tools.bench",
         "fer_ros.tools.demo", "fer_ros.training.quantize", "fer_ros.ros.bag_publisher",
         "fer_ros.ros.latency_probe"]
NEEDS_ROS = ("fer_ros.ros.",)
# options named otherwise than their setting
SETTING_OF = {"model": "model_path", "threads": "num_threads"}


def parser_of(module_name: str) -> argparse.ArgumentParser:
    if module_name.startswith(NEEDS_ROS):
        pytest.importorskip("rclpy", reason="rclpy is not installed")
    return importlib.import_module(module_name).get_args_parser()


def option_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = parser._get_formatter()
    return formatter._expand_help(action) if action.help else ""


def options(parser: argparse.ArgumentParser):
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("module_name", TOOLS)
def test_every_option_says_what_it_does_and_its_default(module_name):
    parser = parser_of(module_name)
    assert parser.formatter_class is HelpFormatter
    parser.format_help()  # renders without error
    for action in options(parser):
        text = option_help(parser, action)
        name = action.option_strings[0] if action.option_strings else action.dest
        assert len(text) > 10, f"{module_name} {name}: no meaning in --help"
        flag, required = action.nargs == 0, action.required or not action.option_strings
        if not flag and not required:
            assert "default" in text.lower(), f"{module_name} {name}: --help does not say its default: {text!r}"


@pytest.mark.parametrize("module_name", TOOLS)
def test_options_shared_with_the_node_have_its_defaults(module_name):
    parser = parser_of(module_name)
    settings = {f.name for f in fields(RecognizerSettings)}
    node = RecognizerSettings()
    for action in options(parser):
        setting = SETTING_OF.get(action.dest, action.dest)
        if setting in settings:
            assert action.default == getattr(node, setting), (module_name, action.dest)
            assert SETTING_HELP[setting] in (action.help or ""), (module_name, action.dest)


def test_replay_recognition_options_are_the_node_parameters_they_say_they_are():
    from fer_ros.tools import replay
    parser = replay.get_args_parser()
    group = next(g for g in parser._action_groups if g.title.startswith("recognition"))
    assert "same defaults" in group.title
    shared = [a for a in group._group_actions if SETTING_OF.get(a.dest, a.dest) in SETTING_HELP]
    assert len(shared) >= 10
    args = parser.parse_args(["some_bag"])
    assert replay.recognizer_settings(args).min_face_size_px == RecognizerSettings().min_face_size_px == 40


def test_the_formatter_adds_defaults_but_not_twice():
    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    p.add_argument("--rate", type=float, default=2.5, help="how fast")
    p.add_argument("--out", default=None, help="where; default: next to the input")
    p.add_argument("--name", default="x", help="a name (default: x, said here already)")
    p.add_argument("--flag", action="store_true", help="turn it on")
    p.add_argument("bag", help="the input")
    text = " ".join(p.format_help().split())
    assert "how fast (default: 2.5)" in text
    assert "where; default: next to the input" in text and "input (default: None)" not in text
    assert text.count("default: x") == 1
    assert "turn it on" in text and "on (default: False)" not in text


@pytest.mark.parametrize("module_name", ["fer_ros.ros.soak", "fer_ros.training.args"])
def test_soak_and_train_help_give_each_default_once(module_name):
    """fer-soak and fer-train use the project's formatter: a default their help states is not followed by
    "(default: None)", and every option still says its default."""
    test_every_option_says_what_it_does_and_its_default(module_name)
    text = " ".join(parser_of(module_name).format_help().split())
    assert "(default: None)" not in text, text


def test_an_on_off_pair_says_which_is_on_by_default():
    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    p.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True, help="run int8")
    p.add_argument("--fast", action=argparse.BooleanOptionalAction, default=False, help="run fast")
    p.add_argument("--flag", action="store_true", help="turn it on")
    text = " ".join(p.format_help().split())
    assert "run int8 (default: --int8)" in text and "run fast (default: --no-fast)" in text
    assert "turn it on" in text and "on (default: False)" not in text


@pytest.mark.parametrize("module_name", ["fer_ros.tools.replay", "fer_ros.tools.evaluate"])
def test_int8_says_it_is_on_by_default(module_name):
    parser = parser_of(module_name)
    action = next(a for a in options(parser) if a.dest == "int8")
    assert RecognizerSettings().int8 is True
    assert option_help(parser, action).endswith("(default: --int8)"), option_help(parser, action)
