"""Shared inputs of the CLIP tests: a small word list (nouns and three adjectives) and labelled Fashion-MNIST
images, two or more per class."""

WORDS = ("dog cat horse bird fish car truck boat train house tree river cloud pizza apple guitar clock lamp "
         "bridge tower castle mountain lake ocean desert forest rocket piano camera sofa").split()


def write_word_list(folder):
    """``folder/words.txt``: the 30 nouns of :data:`WORDS` and three adjectives (33 words); returns its path."""
    words = folder / "words.txt"
    words.write_text("\n".join(WORDS + ["red\tadj", "furry\tadj", "wooden\tadj"]) + "\n")
    return words


def labelled_images(dataset_factory, fashion_files, per_class):
    """A dataset of ``per_class`` Fashion-MNIST images of each of the 10 classes, labelled in ``ground_truth``."""
    paths, names = fashion_files
    idx = [c * 20 + j for c in range(10) for j in range(per_class)]
    return dataset_factory([paths[i] for i in idx], [names[i] for i in idx])


def small_clip_run(dataset_factory, fashion_files, tiny_clip, tmp_path, **settings):
    """``(dataset, keyword arguments)`` for a CLIP scorer: 20 labelled Fashion-MNIST images, the tiny CLIP model,
    the 33-word list, a private text cache, no progress bars, plus ``settings``."""
    ds = labelled_images(dataset_factory, fashion_files, 2)
    kw = dict(model_name=tiny_clip.name, pretrained=str(tiny_clip.safetensors),
              word_list=str(write_word_list(tmp_path)), cache_dir=str(tmp_path / "cache"), progress=False)
    return ds, dict(kw, **settings)
