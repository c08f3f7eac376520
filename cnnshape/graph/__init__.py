"""`cnnshape graph`: a walk's Report drawn as the book draws a network.

One job per module: ``model`` turns a Report into nodes, edges and nested blocks (at any
depth, with or without ops, runs folded); ``labels`` words them for people; ``shade``
colours them; ``dot``, ``mermaid``, ``document`` (JSON) and ``page`` (HTML, with
``page_script``) write one format each; ``engine`` runs the layout (Graphviz's ``dot``, from
the graphviz-pure wheel, else a system one); ``formats`` maps a file's extension to its
writer and writes the file atomically. Nothing here imports torch: a cached Report is drawn
without it.
"""
