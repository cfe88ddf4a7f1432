"""The ICL-vs-GD page's recorded command lines, as a fresh checkout would run them."""

from icl_interp.lm.evidence_page import command_line


def test_recorded_command_lines_name_no_machine_folders() -> None:
    argv = ["/home/x/repo/analyses/icl_gd_report.py", "--model", "m", "--data-dir", "/abs/data",
            "--archive", "/abs/repo/docs/icl_vs_gd/units", "--out", "/tmp/r"]  # fmt: skip
    assert command_line(argv) == (
        "analyses/icl_gd_report.py --model m --data-dir ../shared/data "
        "--archive docs/icl_vs_gd/units --out runs/icl_gd_report"
    )
