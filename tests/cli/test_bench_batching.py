from moss_components.cli.main import main


def test_bench_batching_prints_fill_and_rates(micro_corpus, capsys):
    main(["bench", "batching", "--corpus", str(micro_corpus), "--steps", "2", "--batch_size", "4", "--threads", "1"])
    out = capsys.readouterr().out
    for what in ("random batches", "length buckets", "audio in padded area", "steps/CPU-min", "vs random"):
        assert what in out, what
    random_fill, bucket_fill = (float(line.split()[-5].rstrip("%")) for line in out.splitlines()[-2:])
    assert bucket_fill > random_fill
