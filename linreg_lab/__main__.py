"""`python -m linreg_lab` and the `linreg-lab` command: a stop signal ends them quietly from the first instant,
before the entry point's imports (a second or more) have run."""

from linreg_lab.lifecycle import quit_quietly_on_signals


def cli() -> None:
    quit_quietly_on_signals()
    from linreg_lab.run import main

    main()


if __name__ == "__main__":
    cli()
