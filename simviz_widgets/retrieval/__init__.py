"""Retrieval: rank a gallery by a whole query image or by one region of it, and see why each
result matched (docs/retrieval.md).

The region score is the decomposition's ``D(i, j)`` summed over the region's rows (Zhu et al.,
"Visual Explanation for Deep Metric Learning", IEEE TIP 2021; Stylianou et al., "Visualizing Deep
Similarity Networks", WACV 2019): one matrix-vector product over the stored gallery embeddings.
"""

from .demos import DEMO_GALLERIES, demo_gallery, demo_items
from .gallery import Gallery
from .index import BACKENDS
from .maps import region_query_map, region_reference_map
from .matrix import cluster_order, order_by_similarity
from .query import QueryDecomposition, SearchResults
from .regions import display_box, region_weights

__all__ = ["Gallery", "QueryDecomposition", "SearchResults", "region_weights", "region_reference_map",
           "region_query_map", "display_box", "cluster_order", "order_by_similarity", "demo_gallery", "demo_items",
           "DEMO_GALLERIES", "BACKENDS"]
