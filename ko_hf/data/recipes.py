"""Named datasets: :class:`DatasetRecipe`, the registry :data:`DATASET_RECIPES` (:func:`register_recipe`), the
built-in recipes ``imdb``, ``snips``, ``mrpc`` and ``demo``, and their citations."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import DatasetError

__all__ = ["DATASET_RECIPES", "DatasetRecipe", "register_recipe"]


IMDB_CITATION = """@InProceedings{maas-EtAl:2011:ACL-HLT2011,
  author    = {Maas, Andrew L. and Daly, Raymond E. and Pham, Peter T. and Huang, Dan and Ng, Andrew Y. and Potts, Christopher},
  title     = {Learning Word Vectors for Sentiment Analysis},
  booktitle = {Proceedings of the 49th Annual Meeting of the Association for Computational Linguistics: Human Language Technologies},
  month     = {June},
  year      = {2011},
  address   = {Portland, Oregon, USA},
  publisher = {Association for Computational Linguistics},
  pages     = {142--150},
  url       = {http://www.aclweb.org/anthology/P11-1015}
}"""

SNIPS_CITATION = """@article{coucke2018snips,
  author  = {Coucke, Alice and Saade, Alaa and Ball, Adrien and Bluche, Th{\\'e}odore and Caulier, Alexandre and Leroy, David and Doumouro, Cl{\\'e}ment and Gisselbrecht, Thibault and Caltagirone, Francesco and Lavril, Thibaut and Primet, Ma{\\"e}l and Dureau, Joseph},
  title   = {Snips Voice Platform: an embedded Spoken Language Understanding system for private-by-design voice interfaces},
  journal = {arXiv preprint arXiv:1805.10190},
  year    = {2018},
  url     = {https://arxiv.org/abs/1805.10190}
}"""

MRPC_CITATION = """@inproceedings{dolan-brockett-2005-automatically,
  author    = {Dolan, William B. and Brockett, Chris},
  title     = {Automatically Constructing a Corpus of Sentential Paraphrases},
  booktitle = {Proceedings of the Third International Workshop on Paraphrasing ({IWP}2005)},
  year      = {2005},
  url       = {https://aclanthology.org/I05-5002}
}"""


@dataclass(frozen=True)
class DatasetRecipe:
    """How to load one named dataset.

    ``hub_id`` (loaded with ``datasets.load_dataset``) or ``resource`` (a file in ``ko_hf/resources``) is the
    default source (``hub_config``: the Hub dataset's configuration, e.g. GLUE's ``mrpc``); ``name=/local/path``
    overrides it. ``text_column``/``label_column`` are tried first (then the auto-detected names); a pair of text
    columns makes a sentence-pair recipe, whose columns must exist. ``label_names`` names integer labels (index =
    id). ``*_split`` are the source's split names (``validation_split=None``: none, carved from train;
    ``test_split=None``: no test split); ``ignore_splits`` are left out (GLUE's ``test``, whose labels are hidden).
    """

    name: str
    description: str
    hub_id: str | None = None
    resource: str | None = None
    hub_config: str | None = None
    text_column: str | tuple[str, str] = "text"
    label_column: str = "label"
    label_names: tuple[str, ...] | None = None
    train_split: str = "train"
    validation_split: str | None = None
    test_split: str | None = "test"
    ignore_splits: tuple[str, ...] = ()
    citation: str | None = None

    def split_map(self) -> dict[str, str]:
        """Source split name -> canonical split name."""
        pairs = (
            (self.train_split, "train"),
            (self.validation_split, "validation"),
            (self.test_split, "test"),
        )
        return {src: dst for src, dst in pairs if src}


DATASET_RECIPES: dict[str, DatasetRecipe] = {}


def register_recipe(recipe: DatasetRecipe, *, overwrite: bool = False) -> DatasetRecipe:
    """Add ``recipe`` to :data:`DATASET_RECIPES` (an existing name needs ``overwrite=True``)."""
    if not recipe.name or "=" in recipe.name or "/" in recipe.name:
        raise DatasetError(f"invalid recipe name {recipe.name!r}: must be non-empty without '=' or '/'")
    if recipe.name in DATASET_RECIPES and not overwrite:
        raise DatasetError(f"recipe {recipe.name!r} is already registered (pass overwrite=True to replace it)")
    DATASET_RECIPES[recipe.name] = recipe
    return recipe


register_recipe(
    DatasetRecipe(
        name="imdb",
        description="IMDB movie reviews, binary sentiment (Maas et al., 2011): 25k train / 25k test",
        hub_id="stanfordnlp/imdb",
        label_names=("neg", "pos"),
        citation=IMDB_CITATION,
    )
)
register_recipe(
    DatasetRecipe(
        name="snips",
        description="Snips NLU benchmark, 7 intents (Coucke et al., 2018): Hub copy with 13,084 train / 1,400 test",
        hub_id="benayas/snips",
        label_column="category",
        citation=SNIPS_CITATION,
    )
)
register_recipe(
    DatasetRecipe(
        name="mrpc",
        description="Microsoft Research Paraphrase Corpus (GLUE MRPC), sentence pairs, paraphrase or not: 3,668 "
                    "train (validation carved from it) / 408 test (GLUE's validation split; its test labels are "
                    "hidden)",
        hub_id="nyu-mll/glue",
        hub_config="mrpc",
        text_column=("sentence1", "sentence2"),
        label_names=("not_equivalent", "equivalent"),
        test_split="validation",
        ignore_splits=("test",),
        citation=MRPC_CITATION,
    )
)
register_recipe(
    DatasetRecipe(
        name="demo",
        description="ko-hf demo: 300 customer-support messages, 5 intents, train 210 / validation 45 / test 45",
        resource="demo_intents.jsonl",
        validation_split="validation",
    )
)
