"""diffusers UNet2DModel folders load into unetlab models that compute diffusers' function.

Each folder is written by diffusers' own ``save_pretrained`` with random weights; the loaded
model must match ``UNet2DModel(x, t).sample`` to 1e-5 relative, in PyTorch and in Jittor.
No network is used.
"""
import json

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

import unetlab
from unetlab import UnetlabError, count_parameters, load_pretrained
from unetlab.cli import main
from unetlab.frameworks.jittor.runtime import import_jittor
from unetlab.pretrained import read_pretrained
from unetlab.pretrained.config import unet2d_config_to_spec
from unetlab.pretrained.names import convert_state_dict

from tiny import rel_err

TOL = 1e-5

#: google/ddpm-cifar10-32's config.json: the DDPM CIFAR-10 network
CIFAR10 = {
    "_class_name": "UNet2DModel", "act_fn": "silu", "attention_head_dim": None,
    "block_out_channels": [128, 256, 256, 256], "center_input_sample": False,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1, "in_channels": 3,
    "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-06, "norm_num_groups": 32,
    "out_channels": 3, "sample_size": 32, "time_embedding_type": "positional",
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
}
#: shaped like google/ddpm-cat-256 (six levels, widths x1 x1 x2 x2 x4 x4, attention at the
#: fifth level: 16x16 of 256) but narrower and at 64x64, so it runs in seconds on a CPU
CAT_SHAPED = {
    **CIFAR10, "block_out_channels": [32, 32, 64, 64, 128, 128], "sample_size": 64, "norm_num_groups": 8,
    "down_block_types": ["DownBlock2D"] * 4 + ["AttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "AttnUpBlock2D"] + ["UpBlock2D"] * 4,
}
#: the other variants: [cos, sin] embedding without shift, padding-1 downsampling, several heads
ADM_LIKE = {
    **CAT_SHAPED, "block_out_channels": [32, 64], "sample_size": 16, "layers_per_block": 1,
    "down_block_types": ["AttnDownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D"] * 2,
    "flip_sin_to_cos": True, "freq_shift": 0, "downsample_padding": 1, "attention_head_dim": 16,
    "norm_eps": 1e-5, "time_embedding_dim": 96,
}
DDPM_SCHEDULER = {"beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear", "num_train_timesteps": 1000}


def save_unet(folder, config, seed=0, safe=True):
    """A UNet2DModel with random weights (norms too) saved by diffusers; returns the module."""
    torch.manual_seed(seed)
    unet = UNet2DModel(**{k: v for k, v in config.items() if not k.startswith("_")}).eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    unet.save_pretrained(folder, safe_serialization=safe)
    return unet


def reference_and_inputs(unet, config, batch=3, seed=1):
    rng = np.random.default_rng(seed)
    size = config["sample_size"]
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    t = rng.integers(0, 1000, size=batch).astype(np.int64)
    t[0] = 999
    with torch.no_grad():
        y = unet(torch.from_numpy(x), torch.from_numpy(t)).sample.numpy()
    return x, t, y


def unetlab_output(model, framework, x, t):
    if framework == "torch":
        with torch.no_grad():
            return model.eval()(torch.from_numpy(x), torch.from_numpy(t)).numpy()
    jt = import_jittor()
    model.eval()
    with jt.no_grad():
        return model(jt.array(x), jt.array(t)).numpy()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """name -> (folder, diffusers module, config) for each saved model."""
    out = {}
    for name, config in (("cifar10", CIFAR10), ("cat_shaped", CAT_SHAPED), ("adm_like", ADM_LIKE)):
        folder = tmp_path_factory.mktemp(name)
        out[name] = (folder, save_unet(folder, config), config)
    return out


@pytest.mark.parametrize("framework", ["torch", "jittor"])
@pytest.mark.parametrize("name", ["cifar10", "cat_shaped", "adm_like"])
def test_loaded_model_matches_diffusers(saved, name, framework):
    folder, unet, config = saved[name]
    x, t, expected = reference_and_inputs(unet, config)
    model = load_pretrained(str(folder), framework=framework)
    assert count_parameters(model) == sum(p.numel() for p in unet.parameters())
    got = unetlab_output(model, framework, x, t)
    assert np.abs(expected).max() > 0.1
    assert rel_err(expected, got) <= TOL


def test_cifar10_config_is_the_ddpm_network(saved):
    spec = read_pretrained(str(saved["cifar10"][0])).model_spec
    assert count_parameters(load_pretrained(str(saved["cifar10"][0]))) == 35_746_307
    assert (spec["base_channels"], spec["channel_mult"], spec["attn_resolutions"]) == (128, [1, 2, 2, 2], [16])
    assert spec["blocks"]["time_embedding"] == {"name": "ddpm", "order": "sin_cos", "freq_shift": 1.0,
                                                "max_period": 10000.0}
    assert spec["blocks"]["downsample"] == "ddpm" and spec["blocks"]["attention"] == "ddpm"
    assert (spec["norm_groups"], spec["norm_eps"]) == (32, 1e-6)


def test_cat_shaped_config_places_attention_at_the_fifth_level(saved):
    spec = read_pretrained(str(saved["cat_shaped"][0])).model_spec
    assert spec["channel_mult"] == [1, 1, 2, 2, 4, 4]
    assert spec["attn_resolutions"] == [64 // 16]
    real = unet2d_config_to_spec({**CAT_SHAPED, "block_out_channels": [128, 128, 256, 256, 512, 512],
                                  "sample_size": 256, "norm_num_groups": 32})
    assert real["attn_resolutions"] == [16] and real["base_channels"] == 128


def test_pth_bin_loads_with_weights_only(tmp_path):
    config = ADM_LIKE
    unet = save_unet(tmp_path, config, seed=3, safe=False)
    assert (tmp_path / "diffusion_pytorch_model.bin").is_file()
    assert not (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    x, t, expected = reference_and_inputs(unet, config)
    assert rel_err(expected, unetlab_output(load_pretrained(str(tmp_path)), "torch", x, t)) <= TOL


def test_pickled_code_in_bin_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pickled code ran",))
    (tmp_path / "config.json").write_text(json.dumps(ADM_LIKE))
    torch.save({"conv_in.weight": Payload()}, tmp_path / "diffusion_pytorch_model.bin")
    with pytest.raises(UnetlabError, match="weights_only=True"):
        load_pretrained(str(tmp_path))


def test_old_attention_names_map_like_the_new_ones(saved):
    folder, unet, _ = saved["adm_like"]
    state = {k: v.numpy() for k, v in unet.state_dict().items()}
    renamed = {k.replace("to_q", "query").replace("to_k", "key").replace("to_v", "value")
               .replace("to_out.0", "proj_attn"): v for k, v in state.items()}
    assert renamed != state
    new, old = convert_state_dict(state, 2), convert_state_dict(renamed, 2)
    assert new.keys() == old.keys()
    assert all(np.array_equal(new[k], old[k]) for k in new)
    assert new["down.0.attn.0.q.weight"].shape == (32, 32, 1, 1)


REFUSED = [
    ({"down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D", "DownBlock2D"]},
     "down_block_types: block type 'CrossAttnDownBlock2D'"),
    ({"up_block_types": ["UpBlock2D"] * 4}, "up_block_types: attention at level 1 is not mirrored"),
    ({"attention_head_dim": 96}, "attention_head_dim: 96 does not divide the 256 channels"),
    ({"num_class_embeds": 10}, "num_class_embeds: 10 is not supported"),
    ({"class_embed_type": "timestep"}, "class_embed_type: 'timestep' is not supported"),
    ({"resnet_time_scale_shift": "scale_shift"}, "resnet_time_scale_shift: 'scale_shift' is not supported"),
    ({"act_fn": "gelu"}, "act_fn: 'gelu' is not supported"),
    ({"center_input_sample": True}, "center_input_sample: True is not supported"),
    ({"time_embedding_type": "fourier"}, "time_embedding_type: 'fourier' is not supported"),
    ({"mid_block_scale_factor": 1.414}, "mid_block_scale_factor: 1.414 is not supported"),
    ({"mid_block_type": None}, "mid_block_type: None is not supported"),
    ({"downsample_padding": 2}, "downsample_padding: 2 is not supported"),
    ({"block_out_channels": [128, 192, 256, 256]}, "block_out_channels: [128, 192, 256, 256]: every width"),
    ({"attn_norm_num_groups": 16}, "attn_norm_num_groups: 16 differs from norm_num_groups 32"),
    ({"norm_num_groups": None}, "norm_num_groups: None: a fixed group count is needed"),
    ({"sample_size": [32, 64]}, "sample_size: [32, 64]: only square images"),
    ({"time_embedding_dim": 300}, "time_embedding_dim: 300 is not a multiple"),
    ({"_class_name": "UNet2DConditionModel"}, "_class_name: 'UNet2DConditionModel' is not a UNet2DModel"),
    ({"cross_attention_dim": 768}, "cross_attention_dim: unknown UNet2DModel field"),
]


@pytest.mark.parametrize("change,message", REFUSED, ids=[next(iter(c)) for c, _ in REFUSED])
def test_unrepresentable_configs_are_refused_by_field(change, message):
    with pytest.raises(UnetlabError) as info:
        unet2d_config_to_spec({**CIFAR10, **change})
    assert str(info.value).startswith(f"config.json: {message}")
    assert "\n" not in str(info.value)


def test_diffusers_default_head_width_is_not_dropped():
    """A config without attention_head_dim gets diffusers' default (8): 32 heads at 256 channels."""
    config = {k: v for k, v in CIFAR10.items() if k != "attention_head_dim"}
    assert unet2d_config_to_spec(config)["blocks"]["attention"] == {"name": "multihead", "head_channels": 8}


def test_refused_folder_gives_one_line_on_the_command_line(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({**CIFAR10, "resnet_time_scale_shift": "scale_shift"}))
    (tmp_path / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    assert main(["sample", str(tmp_path), "--steps", "2", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"unetlab sample: error: {tmp_path / 'config.json'}: resnet_time_scale_shift: 'scale_shift' "
                   "is not supported (only the embedding added after conv1 is mapped)")
    assert not (tmp_path / "out").exists()


def test_offline_hub_id_says_which_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(UnetlabError) as info:
        load_pretrained("google/ddpm-cifar10-32")
    message = str(info.value)
    assert message.startswith("google/ddpm-cifar10-32: cannot fetch it from the hub")
    assert "https://huggingface.co/google/ddpm-cifar10-32 into the folder google/ddpm-cifar10-32/ here" in message
    assert "\n" not in message


def test_hub_id_without_huggingface_hub_says_which_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "huggingface_hub", None)
    with pytest.raises(UnetlabError, match="huggingface_hub is not installed .* into the folder "
                                           "google/ddpm-cat-256/ here"):
        load_pretrained("google/ddpm-cat-256")


def test_hub_id_resolves_to_the_folder_of_that_name(saved, tmp_path, monkeypatch):
    """After following the offline advice, the same id works as a local folder."""
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copytree(saved["adm_like"][0], tmp_path / "google" / "ddpm-tiny")
    assert count_parameters(load_pretrained("google/ddpm-tiny")) == sum(p.numel() for p in saved["adm_like"][1].parameters())


def test_scheduler_config_gives_the_betas(saved, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(saved["adm_like"][0], folder)
    DDPMScheduler(**DDPM_SCHEDULER).save_pretrained(folder)
    assert read_pretrained(str(folder)).diffusion == {"T": 1000, "schedule": "linear", "beta_start": 0.0001,
                                                      "beta_end": 0.02, "prediction": "eps"}
    DDPMScheduler(beta_schedule="scaled_linear", prediction_type="v_prediction").save_pretrained(folder)
    assert read_pretrained(str(folder)).diffusion["schedule"] == "quadratic"
    DDPMScheduler(beta_schedule="sigmoid").save_pretrained(folder)
    with pytest.raises(UnetlabError, match="beta_schedule: 'sigmoid' is not supported"):
        read_pretrained(str(folder))


def test_cli_sample_from_a_saved_folder(saved, tmp_path, capsys):
    import shutil

    from unetlab.diffusion import ddim_sample, make_betas

    folder = tmp_path / "model"
    shutil.copytree(saved["adm_like"][0], folder)
    DDPMScheduler(**DDPM_SCHEDULER).save_pretrained(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    out = tmp_path / "samples"
    assert main(["sample", str(folder), "-n", "2", "--steps", "4", "--eta", "0", "--skip", "quadratic",
                 "--out", str(out)]) == 0
    assert "2 samples (ddim, torch)" in capsys.readouterr().out
    images = np.load(out / "samples.npz")["images"]
    assert images.shape == (2, 16, 16, 3) and (out / "grid.png").is_file()
    # the same numbers as sampling the loaded model directly from the command's noise
    model = load_pretrained(str(folder)).eval()
    x_T = np.random.default_rng([0, 3]).standard_normal((2, 3, 16, 16), dtype=np.float32)
    with torch.no_grad():
        x0 = ddim_sample(model, torch.from_numpy(x_T), betas=make_betas("linear", 1000), steps=4, eta=0.0,
                         skip="quadratic").numpy()
    expected = np.clip((x0 + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    assert np.abs(images.astype(int) - expected.astype(int)).max() <= 1
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_cli_sample_needs_the_scheduler_config(saved, capsys):
    folder = saved["adm_like"][0]
    assert main(["sample", str(folder), "-n", "1", "--steps", "2"]) == 2
    assert "no scheduler_config.json" in capsys.readouterr().err


def test_cli_fid_of_a_saved_folder(saved, tmp_path, capsys):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(saved["adm_like"][0], folder)
    DDPMScheduler(**DDPM_SCHEDULER).save_pretrained(folder)
    out = tmp_path / "fid-samples"
    code = main(["fid", str(folder), "--n", "8", "--steps", "3", "--reference", "dataset", "--data", "shapes",
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert printed.startswith(f"{folder}: FD-shapes ") and "(8 images, ddim3 eta0 quadratic, torch; dataset)" in printed
    assert np.load(out / "samples.npz")["images"].shape == (8, 16, 16, 3)


def test_public_api_exports_load_pretrained():
    assert unetlab.load_pretrained is load_pretrained


def test_bfloat16_safetensors_are_read(saved, tmp_path):
    from safetensors.torch import save_file

    from unetlab.pretrained.files import read_weights

    unet = saved["adm_like"][1]
    state = {k: v.to(torch.bfloat16).contiguous() for k, v in unet.state_dict().items()}
    save_file(state, tmp_path / "w.safetensors")
    arrays = read_weights(tmp_path / "w.safetensors")
    assert arrays["conv_in.weight"].dtype == np.float32
    assert np.array_equal(arrays["conv_in.weight"], state["conv_in.weight"].float().numpy())


def test_fid_sampling_options_are_refused_for_an_image_folder(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    assert main(["fid", str(tmp_path / "images"), "--steps", "10"]) == 2
    assert capsys.readouterr().err.strip() == ("unetlab fid: error: --steps applies to a pretrained SOURCE only "
                                               "(a run samples as its spec's sample section says; an image folder "
                                               "is scored as it is)")
