"""The diffusers engine and CLIP verifiers on tiny random models saved to a temporary directory,
loaded back by path (as diffusers and transformers test themselves); CPU, no hub."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from testtime.budget import Budget  # noqa: E402
from testtime.diffusion.base import DiffusionError, DiffusionProblem  # noqa: E402
from testtime.diffusion.context import DiffusionContext  # noqa: E402
from testtime.diffusion.engines import make_engine, make_verifier  # noqa: E402
from testtime.diffusion.searches import make_search  # noqa: E402


@pytest.fixture(scope="module")
def ddpm_dir(tmp_path_factory):
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3,
                                 layers_per_block=1, block_out_channels=(8, 16),
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(100))
    path = tmp_path_factory.mktemp("ddpm")
    pipe.save_pretrained(path)
    return path


def _tokenizer(path):
    chars = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tok = transformers.CLIPTokenizer(str(path / "vocab.json"), str(path / "merges.txt"),
                                     model_max_length=32)
    tok.save_pretrained(path)
    return tok


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clip")
    cfg = transformers.CLIPConfig(
        text_config={"vocab_size": 60, "hidden_size": 16, "intermediate_size": 32,
                     "num_hidden_layers": 1, "num_attention_heads": 2,
                     "max_position_embeddings": 32},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 16, "patch_size": 8},
        projection_dim=8)
    transformers.CLIPModel(cfg).save_pretrained(path)
    _tokenizer(path)
    return path


def test_tiny_unet_pipeline_end_to_end(ddpm_dir, counter):
    engine = make_engine(f"diffusers:path={ddpm_dir},local_only=true")
    hook = counter(engine.pipe.unet)
    p = engine.problems(1, seed=0)[0]
    ctx = DiffusionContext(p, engine.sampler("ddim"), _brightness(), budget=Budget(nfes=24))
    try:
        result = make_search("random-search:steps=4").run(ctx)
    finally:
        hook.close()
    assert result.usage.nfes == 24 == hook.samples
    assert result.tensor().shape == (3, 8, 8)
    assert 0.0 <= result.score <= 1.0 and not result.usage.flops_known


@pytest.mark.parametrize("search", ["paths:steps=4", "smc:steps=4", "zero-order:steps=4"])
def test_tiny_unet_every_search_runs(ddpm_dir, search):
    engine = make_engine(f"diffusers:path={ddpm_dir}")
    ctx = DiffusionContext(engine.problems(1, 0)[0], engine.sampler("ddpm"), _brightness(),
                           budget=Budget(nfes=16))
    assert make_search(search).run(ctx).usage.nfes <= 16


def test_missing_pipeline_is_a_clear_error(tmp_path):
    with pytest.raises(DiffusionError, match="cannot load diffusers pipeline"):
        make_engine(f"diffusers:path={tmp_path / 'nothing'},local_only=true")


def test_clip_score_on_tiny_clip(ddpm_dir, clip_dir):
    engine = make_engine(f"diffusers:path={ddpm_dir}")
    problem = DiffusionProblem(id="p", prompt="a red cat", seed=0)
    verifier = make_verifier(f"clip:path={clip_dir}", engine, [problem])
    ctx = DiffusionContext(problem, engine.sampler(), verifier, budget=Budget(nfes=8))
    result = make_search("random-search:steps=2").run(ctx)
    assert 0.0 <= result.score <= 1.0
    assert result.usage.verifier_passes == 4 and result.usage.verifier_flops > 0
    with pytest.raises(DiffusionError, match="needs a prompt"):
        make_verifier(f"clip:path={clip_dir}", engine, [DiffusionProblem(id="q")])


def test_aesthetic_on_tiny_clip(ddpm_dir, clip_dir, tmp_path):
    from testtime.diffusion.verifiers.clip import AestheticHead

    torch.manual_seed(1)
    head = tmp_path / "head.pth"
    torch.save(AestheticHead(8).state_dict(), head)
    engine = make_engine(f"diffusers:path={ddpm_dir}")
    verifier = make_verifier(f"aesthetic:path={clip_dir},head={head}", engine)
    scores = verifier.score(torch.rand(3, 3, 8, 8), DiffusionProblem(id="x"))
    assert scores.shape == (3,) and bool(((scores >= 0) & (scores <= 1)).all())


def test_tiny_stable_diffusion_with_guidance(clip_dir, tmp_path, counter):
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(8, 16), norm_num_groups=4, cross_attention_dim=16,
        attention_head_dim=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                                  block_out_channels=(8, 16), norm_num_groups=4,
                                  down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2)
    text = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=60, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=32))
    tok = transformers.CLIPTokenizer.from_pretrained(clip_dir)
    pipe = diffusers.StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text, tokenizer=tok,
        scheduler=diffusers.DDIMScheduler(num_train_timesteps=100), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(tmp_path / "sd")
    engine = make_engine(f"diffusers:path={tmp_path / 'sd'},height=16,width=16")
    assert engine.task_kind == "prompt"
    hook = counter(engine.pipe.unet)
    problem = DiffusionProblem(id="p", prompt="a cat", seed=0)
    ctx = DiffusionContext(problem, engine.sampler("ddim", guidance=3.0), _brightness(),
                           budget=Budget(nfes=12))
    try:
        result = make_search("random-search:steps=3").run(ctx)
    finally:
        hook.close()
    assert result.usage.nfes == 12 == hook.samples
    assert result.tensor().shape == (3, 16, 16)
    with pytest.raises(DiffusionError, match="needs a prompt"):
        DiffusionContext(DiffusionProblem(id="q"), engine.sampler(), _brightness())


class _Brightness:
    """A verifier with no model: mean brightness (the tests' own, so it needs nothing)."""

    name = "brightness"
    needs: frozenset[str] = frozenset()
    flops_per_pass = None

    def score(self, images, problem):
        return images.mean(dim=(1, 2, 3))


def _brightness():
    return _Brightness()
