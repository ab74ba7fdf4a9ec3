"""The README's two commands are the ones CI and users run."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (REPO / "README.md").read_text())


def test_readme_opens_with_the_two_commands():
    main_job, tests = readme_commands()[:2]
    steps = [step.strip() for step in main_job.split("&&")]
    assert [step.split()[2] for step in steps[2:]] == ["featurestore.build", "discovery.quickstart", "recommend.quickstart"]
    assert "torch" not in tests or "torch==2.13.0" in tests
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command_verbatim():
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci_lines


def test_torch_is_pinned_to_the_cpu_build():
    assert '"torch==2.13.0"' in (REPO / "pyproject.toml").read_text()
