from moss_components.cli.main import main


def test_bench_data_prints_the_table(capsys):
    main(
        [
            "bench",
            "data",
            "--synth_facts",
            "8",
            "--batches",
            "2",
            "--batch_size",
            "2",
            "--max_length",
            "128",
            "--num_workers",
            "0",
            "--model_steps",
            "1",
            "--model_layers",
            "1",
            "--model_hidden",
            "32",
        ]
    )
    out = capsys.readouterr().out
    for what in ("utt/s", "grids/s", "tokens/s", "steps/s", "loader / model tokens per second"):
        assert what in out, what
