"""The machine a benchmark records: its CPU and vector width read from /proc/cpuinfo, whatever the host."""

from benchmarks import machine

ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx2 fma avx512f avx512bw avx512_vnni

processor\t: 1
model name\t: something else
flags\t\t: fpu
"""


def test_the_first_processor_names_the_model_and_its_widest_vectors(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(ZEN4)
    d = machine.describe(info, threads=2)
    assert d["model"] == "AMD EPYC (family 25, model 17)"
    assert d["simd"] == "avx512+vnni"
    assert d["threads"] == 2 and d["cpus"] >= 1 and len(d["load_average"]) == 1 + 2
    assert "avx512+vnni" in machine.line(d) and "AMD EPYC" in machine.line(d)


def test_vector_widths_are_told_apart():
    assert machine.simd({"avx2", "fma"}) == "avx2"
    assert machine.simd({"avx2", "avx_vnni"}) == "avx2+vnni"
    assert machine.simd({"asimd", "asimddp"}) == "neon+vnni"
    assert machine.simd({"sse2"}) == "baseline"


def test_a_host_without_cpuinfo_is_described_as_unknown(tmp_path):
    d = machine.describe(tmp_path / "absent")
    assert d["simd"] == "unknown" and d["model"]  # platform.processor() or "unknown"
